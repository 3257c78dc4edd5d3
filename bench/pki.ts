/** lib/pki benchmarks: issuance from a CSR, chain verification, key generation; forge's pure-JS signing as reference. */
import { X509Certificate } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import forge from 'node-forge';
import { unwrap } from '../lib/errors/codes.js';
import { createCsr, parseCsr } from '../lib/pki/csr.js';
import { gatewayUri } from '../lib/pki/identity.js';
import { generateKeyPairSync, type KeyAlgorithm } from '../lib/pki/keys.js';
import { issueGatewayServerCert } from '../lib/pki/profiles.js';
import { loadTrustAnchors, verifyCertificateChain } from '../lib/pki/verify.js';
import { hierarchy } from '../test/pki/fixtures.js';
import { type BenchRow, fmt, rate, renderTable } from './table.js';

const URI = gatewayUri('td.example', 'acme', 'gw-1');

/** Parse + check a CSR, then issue a gateway server cert from it. */
async function issueRate(alg: KeyAlgorithm): Promise<number> {
  const h = hierarchy(alg, 'Bench', new Date());
  const csr = createCsr({ privateKey: generateKeyPairSync().privateKey, commonName: 'gw-1' });
  return rate(() => {
    const parsed = unwrap(parseCsr(csr));
    unwrap(issueGatewayServerCert(h.issuer, { subjectKey: parsed.publicKey, uri: URI, now: new Date() }));
  }, 1500);
}

function keygenMs(alg: KeyAlgorithm, n: number): number {
  const start = performance.now();
  for (let i = 0; i < n; i++) generateKeyPairSync(alg);
  return (performance.now() - start) / n;
}

/** forge's own X.509 path: build and sign an RSA-2048 cert in JavaScript (the way forge-only code would). */
async function forgeSignRate(): Promise<number> {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date();
  cert.validity.notAfter = new Date(Date.now() + 86400_000);
  cert.setSubject([{ name: 'commonName', value: 'gw-1' }]);
  cert.setIssuer([{ name: 'commonName', value: 'Bench' }]);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 6, value: URI }] }]);
  return rate(() => cert.sign(keys.privateKey, forge.md.sha256.create()), 1500);
}

export async function benchPki(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const forgeRate = await forgeSignRate();
  const ec = await issueRate('ecdsa-p256');
  const rsa = await issueRate('rsa-2048');
  rows.push({
    area: 'pki',
    metric: 'certs/s from CSR, ECDSA P-256 issuer',
    ours: fmt.perSec(ec),
    note: 'parse+verify CSR, build TBS (forge.asn1), crypto.sign',
  });
  rows.push({
    area: 'pki',
    metric: 'certs/s from CSR, RSA-2048 issuer',
    ours: fmt.perSec(rsa),
    reference: `${fmt.perSec(forgeRate)} (forge cert.sign, pure JS)`,
  });

  const h = hierarchy('ecdsa-p256', 'Bench', new Date());
  const leafKey = generateKeyPairSync();
  const leaf = unwrap(issueGatewayServerCert(h.issuer, { subjectKey: leafKey.publicKey, uri: URI, now: new Date() }));
  const anchors = unwrap(loadTrustAnchors(h.root.pem));
  const chain = [leaf.der, h.inter.der];
  const verifyRate = await rate(() => {
    unwrap(verifyCertificateChain({ chain, anchors, now: new Date(), purpose: 'serverAuth', expectedUri: URI }));
  }, 1500);
  // Reference: Node's X509Certificate checking the two signature links only (no chain building, no policy).
  const [x0, x1, x2] = [leaf.der, h.inter.der, h.root.der].map((d) => new X509Certificate(d));
  const nodeRate = await rate(() => {
    if (!(x0!.verify(x1!.publicKey) && x1!.verify(x2!.publicKey))) throw new Error('bad chain');
  }, 1500);
  rows.push({
    area: 'pki',
    metric: 'verify/s, 2-level ECDSA chain (full policy)',
    ours: fmt.perSec(verifyRate),
    reference: `${fmt.perSec(nodeRate)} (X509Certificate.verify x2, links only)`,
  });
  rows.push({ area: 'pki', metric: 'keygen ECDSA P-256', ours: fmt.ms(keygenMs('ecdsa-p256', 200)) });
  rows.push({
    area: 'pki',
    metric: 'keygen RSA-2048',
    ours: fmt.ms(keygenMs('rsa-2048', 8)),
    note: 'native, random prime search',
  });
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(renderTable(await benchPki()));
}
