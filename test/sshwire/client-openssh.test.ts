/**
 * Our ssh2 client (lib/sshwire/client) against a real OpenSSH sshd: user certificates on the wire, the
 * host certificate checked by lib/sshcert, and a remote forward through sshd.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import ssh2 from 'ssh2';
import { GatewayError } from '../../lib/errors/codes.js';
import { type CertClientOptions, connectWithCertificate } from '../../lib/sshwire/client.js';
import { type CertFiles, type KeyFiles, keygen, keygenSign, TempDir } from '../helpers/openssh.js';
import { type RunningSshd, startSshd } from '../helpers/sshd.js';

const dir = new TempDir();
let sshd: RunningSshd;
let userCa: KeyFiles;
let otherCa: KeyFiles;
let hostCa: KeyFiles;
let gw: KeyFiles;
let gwCert: CertFiles;

before(async () => {
  userCa = keygen(dir, 'user_ca');
  otherCa = keygen(dir, 'other_ca');
  hostCa = keygen(dir, 'host_ca');
  const host = keygen(dir, 'host');
  const hostCert = keygenSign(hostCa, host, { id: 'proxy-1', principals: ['proxy.test'], host: true });
  gw = keygen(dir, 'gw');
  // the gateway profile: only permit-port-forwarding
  gwCert = keygenSign(userCa, gw, { id: 'gw-1', principals: ['gw1'], options: ['clear', 'permit-port-forwarding'] });
  sshd = await startSshd({
    dir,
    hostKeyPath: host.path,
    hostCertPath: hostCert.path,
    trustedUserCaKeysPath: userCa.pubPath,
    principals: ['gw1'],
    extra: ['AllowTcpForwarding remote', 'GatewayPorts no'],
  });
});

after(async () => {
  await sshd?.stop();
  dir.remove();
});

function options(over: Partial<CertClientOptions> = {}): CertClientOptions {
  return {
    host: '127.0.0.1',
    port: sshd.port,
    username: sshd.user,
    privateKey: gw.privateKey,
    certificate: gwCert.line,
    trustedHostCaKeys: [hostCa.blob],
    hostPrincipal: 'proxy.test',
    readyTimeout: 10_000,
    ...over,
  };
}

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.then(
    () => assert.fail('connection should have been refused'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
  return err;
}

test('authenticates to sshd with a user certificate and carries bytes through a remote forward', async () => {
  const { client, hostCertificate } = await connectWithCertificate(options());
  try {
    assert.equal(hostCertificate.keyId, 'proxy-1');
    assert.match(sshd.log(), /Accepted publickey for \S+ .*ED25519-CERT .*ID gw-1/);
    client.on('tcp connection', (_info, acceptConn) => {
      const ch = acceptConn();
      ch.on('data', (d: Buffer) => ch.write(Buffer.from(d.toString('utf8').toUpperCase())));
      ch.on('end', () => ch.end());
    });
    const port = await new Promise<number>((resolve, reject) =>
      client.forwardIn('127.0.0.1', 0, (err, p) => (err ? reject(err) : resolve(p))),
    );
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = connect(port, '127.0.0.1', () => sock.end('through the tunnel'));
      let got = '';
      sock.setEncoding('utf8').on('data', (d: string) => {
        got += d;
      });
      sock.on('end', () => resolve(got)).on('error', reject);
    });
    assert.equal(reply, 'THROUGH THE TUNNEL');
  } finally {
    client.end();
  }
});

test('an RSA user certificate authenticates too (rsa-sha2-*-cert-v01 on the wire)', async () => {
  const rsa = keygen(dir, 'gw_rsa', 'rsa');
  const cert = keygenSign(userCa, rsa, { id: 'gw-rsa', principals: ['gw1'] });
  const { client } = await connectWithCertificate(options({ privateKey: rsa.privateKey, certificate: cert.blob }));
  client.end();
  assert.match(sshd.log(), /Accepted publickey for \S+ .*RSA-CERT .*ID gw-rsa/);
});

test('sshd refuses a user certificate from another CA', async () => {
  const key = keygen(dir, 'gw_other');
  const cert = keygenSign(otherCa, key, { id: 'gw-other', principals: ['gw1'] });
  const err = await refusal(connectWithCertificate(options({ privateKey: key.privateKey, certificate: cert.line })));
  assert.equal(err.code, 'E_SSH_AUTH');
});

test('a certificate for another key is refused before connecting', async () => {
  const key = keygen(dir, 'unrelated');
  const err = await refusal(connectWithCertificate(options({ privateKey: key.privateKey })));
  assert.equal(err.code, 'E_KEY_UNSUPPORTED');
});

test('the host certificate must come from a trusted host CA', async () => {
  const err = await refusal(connectWithCertificate(options({ trustedHostCaKeys: [otherCa.blob] })));
  assert.equal(err.code, 'E_SSH_HOST_CERT');
  assert.match(err.message, /E_CERT_UNTRUSTED/);
});

test('the host certificate must name the host we dialled', async () => {
  const err = await refusal(connectWithCertificate(options({ hostPrincipal: 'other-proxy.test' })));
  assert.equal(err.code, 'E_SSH_HOST_CERT');
  assert.match(err.message, /E_CERT_WRONG_PRINCIPAL/);
});

test('an expired host certificate is refused', async () => {
  const twoHoursLater = Date.now() + 2 * 3600_000;
  const err = await refusal(connectWithCertificate(options({ now: () => twoHoursLater })));
  assert.equal(err.code, 'E_SSH_HOST_CERT');
  assert.match(err.message, /E_CERT_EXPIRED/);
});

test('without opting in, patched ssh2 still negotiates the plain host key', async () => {
  const seen = await new Promise<string>((resolve) => {
    const c = new ssh2.Client();
    c.on('error', () => {}); // the refusal below ends the handshake
    c.connect({
      host: '127.0.0.1',
      port: sshd.port,
      username: sshd.user,
      authHandler: ['none'],
      hostVerifier: (key: Buffer) => {
        resolve(key.subarray(4, 4 + key.readUInt32BE(0)).toString());
        return false;
      },
    });
  });
  assert.equal(seen, 'ssh-ed25519');
});
