/** X.509 certificates, chains and CSRs (lib/pki der.ts, x509.ts, verify.ts, csr.ts). */
import { createPrivateKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import fc from 'fast-check';
import { createCsr, parseCsr } from '../../../lib/pki/csr.js';
import * as der from '../../../lib/pki/der.js';
import { encodeGrant, encodeRoute, GRANT_EXTENSION_OID, ROUTE_EXTENSION_OID } from '../../../lib/pki/grant.js';
import {
  loadTrustAnchors,
  type TrustAnchors,
  type VerifiedPeer,
  verifyCertificateChain,
} from '../../../lib/pki/verify.js';
import { certificateInputs, parseCertificate, toPem } from '../../../lib/pki/x509.js';
import { cloneNode, decodeLenient, mutateTree, toBuffer } from '../der-mutate.js';
import { mutants, randomBytes, textMutants } from '../mutate.js';
import type { FuzzTarget, Seeds } from '../target.js';
import { validGrant } from './grant.js';

const ok = (o: { threw: boolean; value?: unknown }): o is { threw: false; value: { ok: true; value: unknown } } =>
  !o.threw && (o.value as { ok?: boolean }).ok === true;
const buf = (u: Uint8Array) => Buffer.from(u);

// ---- the raw certificate reader ------------------------------------------------------------------------------

export const x509Parse: FuzzTarget<Buffer | string> = {
  name: 'x509-parse',
  covers: 'lib/pki/x509 parseCertificate (DerError is its contract), lib/pki/verify loadTrustAnchors (PEM)',
  arbitrary: (s) => {
    const ders = s.x509.chains.flat();
    return fc.oneof(
      { weight: 6, arbitrary: mutants(ders) },
      { weight: 2, arbitrary: textMutants([s.x509.anchorsPem, ...ders.map((d) => toPem(buf(d)))]) },
      { weight: 1, arbitrary: randomBytes(2048) },
    );
  },
  run: (input) => (typeof input === 'string' ? loadTrustAnchors(input) : parseCertificate(input)),
  allowError: (err) => err instanceof der.DerError,
  check: (input, outcome) => {
    if (outcome.threw || typeof input === 'string') return undefined;
    const c = outcome.value as ReturnType<typeof parseCertificate>;
    if (!c.der.equals(input)) return 'parsed der differs from the input';
    const again = certificateInputs(toPem(c.der));
    return again.length === 1 && again[0]!.equals(input) ? undefined : 'PEM does not round-trip';
  },
};

// ---- chains judged by THE verifier, with mutated fields re-signed by the seed CA ---------------------------

interface ChainCase {
  chain: Buffer[];
  purpose: 'serverAuth' | 'clientAuth';
  expectedHost?: string;
  expectedUri?: string;
  requireGrant: boolean;
  requireRoute: boolean;
  revoked: boolean;
  nowOffsetSec: number;
}

let anchors: TrustAnchors | undefined;
let caKey: KeyObject | undefined;
function trust(s: Seeds): { anchors: TrustAnchors; caKey: KeyObject } {
  if (!anchors) {
    const loaded = loadTrustAnchors(s.x509.anchorsPem);
    if (!loaded.ok) throw new Error(`seed anchors: ${loaded.reason}`);
    anchors = loaded.value;
  }
  caKey ??= createPrivateKey(s.x509.caKeyPem);
  return { anchors, caKey };
}

const extension = (oid: string, critical: boolean, value: Buffer) =>
  der.seq(der.oid(oid), ...(critical ? [der.bool(true)] : []), der.octets(value));

/** Re-signs a (mutated) TBSCertificate of the first seed leaf with the seed root's P-256 key. */
function resigned(s: Seeds, tape: number[], extra: Buffer | undefined, extraOid: string, critical: boolean): Buffer {
  const cert = decodeLenient(buf(s.x509.chains[0]![0]!));
  const [tbs, alg] = cert.value as der.Node[];
  const copy = cloneNode(tbs!);
  if (extra) {
    // Put the extension in the extensions list ([3] → SEQUENCE), where the verifier looks for it.
    const fields = copy.value as der.Node[];
    const wrapper = fields[fields.length - 1]!;
    const list = (wrapper.value as der.Node[])[0]!;
    (list.value as der.Node[]).push(extension(extraOid, critical, extra));
  }
  const mutated = tape.length > 0 ? mutateTree(copy, tape) : copy;
  const tbsDer = toBuffer(mutated);
  const signature = sign('sha256', tbsDer, trust(s).caKey);
  return der.encode(der.seq(der.raw(tbsDer), cloneNode(alg!), der.bits(signature)));
}

const grantBytes = fc.oneof(
  validGrant
    .map((g) => encodeGrant(g))
    .filter((e) => e.ok)
    .map((e) => e.value),
  fc
    .constant(encodeRoute({ version: 1, orgId: 'org-a', gatewayId: 'gw-1' }))
    .map((e) => (e.ok ? e.value : Buffer.alloc(0))),
  randomBytes(64),
);

export const x509Verify: FuzzTarget<ChainCase> = {
  name: 'x509-verify',
  covers: 'lib/pki/verify verifyCertificateChain (path building, extensions, SANs, grant and route decoding)',
  arbitrary: (s) => {
    const chains = s.x509.chains.map((c) => c.map(buf));
    const leafTape = fc.array(fc.nat(), { minLength: 0, maxLength: 24 });
    const resignedLeaf = fc
      .tuple(
        leafTape,
        fc.option(grantBytes, { nil: undefined }),
        fc.constantFrom(GRANT_EXTENSION_OID, ROUTE_EXTENSION_OID, '1.2.3.4'),
        fc.boolean(),
      )
      .map(([tape, extra, oid, critical]) => [resigned(s, tape, extra, oid, critical)]);
    const chain = fc.oneof(
      { weight: 1, arbitrary: fc.constantFrom(...chains) },
      { weight: 5, arbitrary: resignedLeaf },
      {
        weight: 4,
        arbitrary: fc
          .nat({ max: chains.length - 1 })
          .chain((i) => mutants([new Uint8Array(chains[i]![0]!)]).map((m) => [m, ...chains[i]!.slice(1)])),
      },
    );
    return fc.record(
      {
        chain,
        purpose: fc.constantFrom('serverAuth' as const, 'clientAuth' as const),
        expectedHost: fc.constantFrom('proxy.example', '127.0.0.1', '::1', 'PROXY.example.', 'other.example'),
        expectedUri: fc.constantFrom('infisical://org/org-a/gateway/gw-1', 'spiffe://x/org/a/gateway/b'),
        requireGrant: fc.boolean(),
        requireRoute: fc.boolean(),
        revoked: fc.boolean(),
        nowOffsetSec: fc.constantFrom(0, 3600, -86_400 * 10, 86_400 * 10),
      },
      { requiredKeys: ['chain', 'purpose', 'requireGrant', 'requireRoute', 'revoked', 'nowOffsetSec'] },
    );
  },
  run: (c, s) =>
    verifyCertificateChain({
      chain: c.chain,
      anchors: trust(s).anchors,
      now: new Date(Date.now() + c.nowOffsetSec * 1000),
      purpose: c.purpose,
      ...(c.expectedHost !== undefined ? { expectedHost: c.expectedHost } : {}),
      ...(c.expectedUri !== undefined ? { expectedUri: c.expectedUri } : {}),
      requireGrant: c.requireGrant,
      requireRoute: c.requireRoute,
      ...(c.revoked ? { isRevoked: () => true } : {}),
    }),
  check: (c, outcome) => {
    if (!ok(outcome)) return undefined;
    const peer = outcome.value.value as VerifiedPeer;
    if (c.revoked) return 'accepted a chain whose every serial is revoked';
    if (c.requireGrant && !peer.grant) return 'accepted without the required grant';
    if (c.requireRoute && !peer.route) return 'accepted without the required route';
    if (c.expectedUri !== undefined && (peer.uris.length !== 1 || peer.uris[0] !== c.expectedUri)) {
      return 'accepted a leaf with another URI';
    }
    const leaf = parseCertificate(c.chain[0]!);
    if (leaf.basicConstraints?.ca) return 'accepted a CA certificate as the peer';
    if (!leaf.extKeyUsage?.includes(c.purpose === 'serverAuth' ? '1.3.6.1.5.5.7.3.1' : '1.3.6.1.5.5.7.3.2')) {
      return 'accepted a leaf without the purpose EKU';
    }
    return undefined;
  },
  show: (c) => JSON.stringify({ ...c, chain: c.chain.map((d) => d.toString('hex')) }),
};

// ---- CSRs ------------------------------------------------------------------------------------------------------

let csrKey: KeyObject | undefined;
const key = () => {
  csrKey ??= generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return csrKey;
};

/** A CSR of our own key with one structural change in CertificationRequestInfo, re-signed so it verifies. */
function resignedCsr(tape: number[], uris: string[]): Buffer {
  const base = createCsr({ commonName: 'fuzz', uris, dnsNames: ['gw.example'], privateKey: key() });
  const root = decodeLenient(base);
  const [info, alg] = root.value as der.Node[];
  const infoDer = toBuffer(mutateTree(cloneNode(info!), tape));
  return der.encode(der.seq(der.raw(infoDer), cloneNode(alg!), der.bits(sign('sha256', infoDer, key()))));
}

export const csrParse: FuzzTarget<Buffer | string> = {
  name: 'csr-parse',
  covers: 'lib/pki/csr parseCsr (PEM and DER), lib/pki/keys describeKey',
  arbitrary: (s) => {
    const ders = s.x509.csrs.map(
      (p) => new Uint8Array(Buffer.from(p.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64')),
    );
    return fc.oneof(
      { weight: 4, arbitrary: mutants(ders) },
      { weight: 2, arbitrary: textMutants(s.x509.csrs) },
      {
        weight: 4,
        arbitrary: fc
          .tuple(
            fc.array(fc.nat(), { minLength: 4, maxLength: 24 }),
            fc.constantFrom([], ['spiffe://t/org/a/gateway/b']),
          )
          .map(([tape, uris]) => resignedCsr(tape, uris)),
      },
      { weight: 1, arbitrary: randomBytes(1024) },
    );
  },
  run: (input) => parseCsr(input),
  check: (_input, outcome) => {
    if (!ok(outcome)) return undefined;
    const csr = outcome.value.value as { spki: Buffer; requested: { uris: unknown[]; dns: unknown[]; ips: unknown[] } };
    const all = [...csr.requested.uris, ...csr.requested.dns, ...csr.requested.ips];
    if (!all.every((n) => typeof n === 'string')) return 'requested names are not strings';
    return Buffer.isBuffer(csr.spki) && csr.spki.length > 0 ? undefined : 'accepted CSR without a key';
  },
};

export const PKI_TARGETS = [x509Parse, x509Verify, csrParse];
