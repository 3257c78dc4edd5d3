/**
 * The short fuzz pass `make test` runs: every target for about two seconds (30 s in all) with a fixed seed, so
 * CI catches a parser that throws, hangs or allocates without bound on inputs like the ones found before. Longer
 * runs: `make fuzz` (FUZZ_SECONDS). Also checks that the seeds, real ssh-keygen and openssl output, are valid and
 * round-trip, so every mutant starts from something the parsers accept.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { caConfigSchema } from '../../lib/ca/config.js';
import { gatewayConfigSchema } from '../../lib/gateway/config.js';
import { parseCsr } from '../../lib/pki/csr.js';
import { loadTrustAnchors, type TrustAnchors, verifyCertificateChain } from '../../lib/pki/verify.js';
import { toPem } from '../../lib/pki/x509.js';
import { proxyConfigSchema } from '../../lib/proxy/config.js';
import { loadConfig } from '../../lib/runtime/config.js';
import {
  formatCertificate,
  formatPublicKey,
  parseCertificate,
  parsePublicKey,
  publicKeyBlob,
  toOpenSshPrivateKey,
} from '../../lib/sshcert/index.js';
import { parseOpenSshPrivateKey } from '../helpers/openssh-key.js';
import { formatReport, fuzz, targetNames } from './runner.js';
import { makeSeeds } from './seeds.js';
import type { Seeds } from './target.js';
import { uncommented } from './targets/config.js';

const TOTAL_SECONDS = Number(process.env['FUZZ_CI_SECONDS'] ?? 30);
const SEED = 1_402_2024;

let seeds: Seeds;
before(() => {
  seeds = makeSeeds();
});

test('seeds: ssh-keygen certificates, keys and private keys parse and round-trip', () => {
  for (const line of seeds.ssh.certs) {
    const c = parseCertificate(line);
    assert.ok(c.ok, `${line.slice(0, 40)}: ${c.ok || c.reason}`);
    assert.equal(formatCertificate(c.value.blob, 'x').split(' ')[1], line.split(' ')[1]);
  }
  for (const line of [...seeds.ssh.publicKeys, ...seeds.ssh.caPublicKeys]) {
    const k = parsePublicKey(line);
    if (line.startsWith('ecdsa-sha2-nistp384')) {
      assert.ok(!k.ok && k.code === 'E_KEY_UNSUPPORTED');
      continue;
    }
    assert.ok(k.ok, line);
    assert.equal(formatPublicKey(k.value), line.split(' ').slice(0, 2).join(' '));
  }
  for (const pem of seeds.ssh.privateKeys) {
    const k = parseOpenSshPrivateKey(pem);
    if (pem === seeds.ssh.privateKeys.at(-1)) {
      assert.ok(!k.ok && k.code === 'E_KEY_UNSUPPORTED', 'P-384 is not a key type we use');
      continue;
    }
    assert.ok(k.ok);
    const again = parseOpenSshPrivateKey(toOpenSshPrivateKey(k.value));
    assert.ok(again.ok && publicKeyBlob(again.value).equals(publicKeyBlob(k.value)));
  }
});

test('seeds: openssl chains verify under their roots, CSRs parse, sample configs load', () => {
  const anchors = loadTrustAnchors(seeds.x509.anchorsPem);
  assert.ok(anchors.ok);
  for (const chain of seeds.x509.chains) {
    const v = verifyCertificateChain({
      chain: chain.map((d) => Buffer.from(d)),
      anchors: anchors.value as TrustAnchors,
      now: new Date(),
      purpose: 'serverAuth',
      expectedHost: 'proxy.example',
    });
    assert.ok(v.ok, v.ok ? '' : v.reason);
    assert.equal(toPem(Buffer.from(chain[0]!)).length > 0, true);
  }
  for (const csr of seeds.x509.csrs) {
    const c = parseCsr(csr);
    assert.ok(c.ok, c.ok ? '' : c.reason);
  }
  const schemas = { ca: caConfigSchema, proxy: proxyConfigSchema, gateway: gatewayConfigSchema };
  for (const { daemon, text } of seeds.configs) {
    loadConfig(schemas[daemon] as never, { readFile: () => uncommented(text), env: {}, cwd: '/' });
  }
});

const names = targetNames();
for (const name of names) {
  test(`fuzz ${name}: no escaped exception, unknown code, broken property, hang or unbounded allocation`, async () => {
    const [report] = await fuzz({
      only: [name],
      secondsEach: TOTAL_SECONDS / names.length,
      seed: SEED,
      seeds,
      // CI machines are shared: only an input slower than this counts (make fuzz uses 2 s).
      slowMs: 10_000,
    });
    console.log(formatReport(report!));
    assert.ok(report!.runs > 0, 'the target ran no input');
    assert.equal(report!.failures, 0, formatReport(report!));
  });
}
