/**
 * Seeds from real tools, made at test time in a temp dir: OpenSSH keys and certificates by ssh-keygen, X.509
 * certificates, chains and CSRs by openssl, config files by the daemons' own sample-config renderer. The fuzz
 * targets mutate these (and generate inputs of their own), so every parser starts from what it meets in the field.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caConfigSchema } from '../../lib/ca/config.js';
import { gatewayConfigSchema } from '../../lib/gateway/config.js';
import { proxyConfigSchema } from '../../lib/proxy/config.js';
import { renderSampleConfig } from '../../lib/runtime/config-doc.js';
import { parseOpenSshPrivateKey } from '../helpers/openssh-key.js';
import type { Seeds } from './target.js';

const run = (cmd: string, args: string[], cwd: string): void => {
  execFileSync(cmd, args, { cwd, stdio: 'pipe' });
};

function sshSeeds(dir: string): Seeds['ssh'] {
  const read = (name: string) => readFileSync(join(dir, name), 'utf8');
  const keygen = (name: string, type: string, bits?: string) =>
    run('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', bits] : []), '-N', '', '-C', name, '-f', name], dir);
  keygen('ca-ed', 'ed25519');
  keygen('ca-rsa', 'rsa', '2048');
  keygen('ca-ec', 'ecdsa', '256');
  keygen('k-ed', 'ed25519');
  keygen('k-rsa', 'rsa', '2048');
  keygen('k-ec', 'ecdsa', '256');
  keygen('k-ec384', 'ecdsa', '384'); // a type we refuse: E_KEY_UNSUPPORTED paths
  const sign = (ca: string, key: string, extra: string[]) =>
    run('ssh-keygen', ['-q', '-s', ca, '-I', `id-${key}`, '-z', '42', '-V', '-5m:+1d', ...extra, `${key}.pub`], dir);
  sign('ca-ed', 'k-ed', ['-n', 'gw-1,org-a', '-O', 'force-command=/bin/true', '-O', 'source-address=127.0.0.1/32']);
  sign('ca-rsa', 'k-rsa', ['-n', 'alice', '-O', 'no-pty']);
  sign('ca-ec', 'k-ec', ['-h', '-n', 'proxy.example,127.0.0.1']);
  const certs = ['k-ed', 'k-rsa', 'k-ec'].map((k) => read(`${k}-cert.pub`).trim());
  // One more: a host certificate of an Ed25519 key by the Ed25519 CA, as proxies present.
  run('cp', ['k-ed.pub', 'h-ed.pub'], dir);
  sign('ca-ed', 'h-ed', ['-h', '-n', 'proxy-1']);
  certs.push(read('h-ed-cert.pub').trim());
  const ca = parseOpenSshPrivateKey(read('ca-ed'));
  if (!ca.ok) throw new Error(`seed CA key unreadable: ${ca.reason}`);
  return {
    certs,
    publicKeys: ['k-ed', 'k-rsa', 'k-ec', 'k-ec384', 'ca-rsa'].map((k) => read(`${k}.pub`).trim()),
    privateKeys: ['k-ed', 'k-rsa', 'k-ec', 'k-ec384'].map((k) => read(k)),
    caPublicKeys: ['ca-ed', 'ca-rsa', 'ca-ec'].map((k) => read(`${k}.pub`).trim()),
    caPrivateKeyPem: ca.value.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

const LEAF_EXT = [
  'basicConstraints=critical,CA:FALSE',
  'keyUsage=critical,digitalSignature',
  'extendedKeyUsage=serverAuth,clientAuth',
  'subjectAltName=URI:infisical://org/org-a/gateway/gw-1,DNS:proxy.example,IP:127.0.0.1,IP:::1',
  'subjectKeyIdentifier=hash',
  'authorityKeyIdentifier=keyid',
].join('\n');
const CA_EXT = [
  'basicConstraints=critical,CA:TRUE,pathlen:1',
  'keyUsage=critical,keyCertSign,cRLSign',
  'subjectKeyIdentifier=hash',
  'authorityKeyIdentifier=keyid',
].join('\n');

function x509Seeds(dir: string): Seeds['x509'] {
  const openssl = (...args: string[]) => run('openssl', args, dir);
  const newKey = (kind: 'ec' | 'rsa' | 'ed25519') =>
    kind === 'ec'
      ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
      : kind === 'rsa'
        ? ['-newkey', 'rsa:2048']
        : ['-newkey', 'ed25519'];
  writeFileSync(join(dir, 'leaf.ext'), LEAF_EXT);
  writeFileSync(join(dir, 'ca.ext'), CA_EXT);
  const root = (name: string, kind: 'ec' | 'rsa') =>
    openssl(
      'req',
      '-x509',
      '-new',
      ...newKey(kind),
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-subj',
      `/O=fuzz/CN=${name}`,
      '-days',
      '3',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    );
  const csr = (name: string, kind: 'ec' | 'rsa' | 'ed25519', san = true) =>
    openssl(
      'req',
      '-new',
      ...newKey(kind),
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
      ...(san ? ['-addext', 'subjectAltName=URI:infisical://org/org-a/gateway/gw-1,DNS:gw.example'] : []),
    );
  const issue = (name: string, ca: string, ext: string) =>
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-set_serial',
      String(1000 + name.length),
      '-days',
      '2',
      '-extfile',
      ext,
      '-out',
      `${name}.pem`,
    );
  root('root-ec', 'ec');
  root('root-rsa', 'rsa');
  csr('leaf-ec', 'ec');
  issue('leaf-ec', 'root-ec', 'leaf.ext');
  csr('leaf-ed', 'ed25519');
  issue('leaf-ed', 'root-ec', 'leaf.ext');
  csr('int-rsa', 'rsa', false);
  issue('int-rsa', 'root-rsa', 'ca.ext');
  csr('leaf-rsa', 'rsa');
  issue('leaf-rsa', 'int-rsa', 'leaf.ext');
  const der = (name: string) => {
    openssl('x509', '-in', `${name}.pem`, '-outform', 'DER', '-out', `${name}.der`);
    return new Uint8Array(readFileSync(join(dir, `${name}.der`)));
  };
  const pem = (name: string) => readFileSync(join(dir, name), 'utf8');
  const caKey = execFileSync('openssl', ['pkcs8', '-topk8', '-nocrypt', '-in', 'root-ec.key'], { cwd: dir }).toString();
  return {
    anchorsPem: pem('root-ec.pem') + pem('root-rsa.pem'),
    chains: [[der('leaf-ec')], [der('leaf-ed')], [der('leaf-rsa'), der('int-rsa')]],
    caKeyPem: caKey,
    caDer: der('root-ec'),
    csrs: ['leaf-ec.csr', 'leaf-ed.csr', 'leaf-rsa.csr', 'int-rsa.csr'].map(pem),
  };
}

/** Makes every seed (about two seconds: a few key generations). */
export function makeSeeds(): Seeds {
  const dir = mkdtempSync(join(tmpdir(), 'fuzz-seeds-'));
  try {
    return {
      ssh: sshSeeds(dir),
      x509: x509Seeds(dir),
      configs: [
        { daemon: 'ca', text: renderSampleConfig(caConfigSchema) },
        { daemon: 'proxy', text: renderSampleConfig(proxyConfigSchema) },
        { daemon: 'gateway', text: renderSampleConfig(gatewayConfigSchema) },
      ],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
