/**
 * PKCS#10 certificate signing requests. The client side writes one with its own key (the key never leaves the
 * host); the CA side parses it and checks its signature, which proves possession of the private key. The names
 * a CSR asks for are reported but never trusted: the CA's profile decides what goes into the certificate.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { refuse, type Verdict } from '../errors/codes.js';
import { buildName, extension, generalNames, type NameSpec, type SanSpec, signStructure } from './build.js';
import * as der from './der.js';
import { algorithmFitsKey, describeKey, type KeyInfo, rememberSpki, SIG_ALGS, spkiDer, WEAK_SIG_ALGS } from './keys.js';
import { OID, pemBlocks, readGeneralNames, type SubjectAltNames, toPem } from './x509.js';

export const MAX_CSR_DER = 16 * 1024;

export interface CsrSpec extends NameSpec, SanSpec {
  privateKey: KeyObject;
}

export interface ParsedCsr {
  /** The key to certify. */
  publicKey: KeyObject;
  /** Its SubjectPublicKeyInfo DER, as the certificate will carry it. */
  spki: Buffer;
  key: KeyInfo;
  subjectCn?: string;
  /** Names the requester asked for (informational; profiles choose the real SANs). */
  requested: SubjectAltNames;
}

/** Writes a DER CSR signed by `privateKey` (ecdsa-with-SHA256 for P-256, sha256WithRSAEncryption for RSA). */
export function createCsr(spec: CsrSpec): Buffer {
  const attributes: der.Node[] = [];
  if (spec.uris?.length || spec.dnsNames?.length || spec.ipAddresses?.length) {
    const names = generalNames(spec);
    if (!names.ok) throw new RangeError(names.reason);
    const exts = der.seq(extension(OID.subjectAltName, false, names.value));
    attributes.push(der.seq(der.oid(OID.extensionRequest), der.set(exts)));
  }
  const info = der.seq(der.uint(0), buildName(spec), der.raw(spkiDer(spec.privateKey)), der.ctx(0, attributes));
  return signStructure(info, spec.privateKey);
}

export function createCsrPem(spec: CsrSpec): string {
  return toPem(createCsr(spec), 'CERTIFICATE REQUEST');
}

/** Parses a CSR (PEM or DER), vets its key and checks its self-signature. Refusals: E_CSR_INVALID, key codes. */
export function parseCsr(input: string | Buffer): Verdict<ParsedCsr> {
  let bytes: Buffer;
  if (Buffer.isBuffer(input) && input[0] === 0x30) {
    bytes = input;
  } else {
    const text = input.toString('latin1');
    if (text.length > MAX_CSR_DER * 2) return refuse('E_CSR_INVALID', 'CSR too large');
    let blocks: Buffer[];
    try {
      blocks = pemBlocks(text, 'CERTIFICATE REQUEST', 1);
    } catch (err) {
      return refuse('E_CSR_INVALID', (err as Error).message);
    }
    if (blocks.length !== 1) return refuse('E_CSR_INVALID', 'expected one PEM CERTIFICATE REQUEST block');
    bytes = blocks[0]!;
  }
  try {
    return checkCsr(bytes);
  } catch (err) {
    if (err instanceof der.DerError) return refuse('E_CSR_INVALID', err.message);
    throw err;
  }
}

function checkCsr(bytes: Buffer): Verdict<ParsedCsr> {
  const [infoNode, algNode, sigNode] = der.readSeq(der.decode(bytes, MAX_CSR_DER), 'CertificationRequest', 3, 3);
  const [version, subject, spkiNode, attrs] = der.readSeq(infoNode, 'CertificationRequestInfo', 4, 4);
  if (der.readUint(version, 'version') !== 0) return refuse('E_CSR_INVALID', 'unsupported CSR version');
  der.readSeq(subject, 'subject');
  const spki = der.encode(spkiNode!);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    rememberSpki(publicKey, spki);
  } catch {
    return refuse('E_KEY_UNSUPPORTED', 'CSR public key cannot be loaded');
  }
  const key = describeKey(publicKey);
  if (!key.ok) return key;

  const alg = der.readSeq(algNode, 'signatureAlgorithm', 1, 2);
  const algOid = der.readOid(alg[0], 'signatureAlgorithm');
  if (WEAK_SIG_ALGS[algOid]) return refuse('E_CERT_WEAK_ALGORITHM', `CSR signed with ${WEAK_SIG_ALGS[algOid]}`);
  const sigAlg = SIG_ALGS[algOid];
  if (!sigAlg || !algorithmFitsKey(sigAlg, key.value)) {
    return refuse('E_CSR_INVALID', `signature algorithm ${algOid} does not fit the key`);
  }
  const signature = der.readBits(sigNode, 'signature').bytes;
  if (!verify(sigAlg.hash, der.firstElementBytes(bytes), publicKey, signature)) {
    return refuse('E_CSR_INVALID', 'CSR signature does not verify (no proof of possession)');
  }

  const requested: SubjectAltNames = { uris: [], dns: [], ips: [] };
  for (const attr of der.readCtx(attrs, 0, true, 'attributes').value as der.Node[]) {
    const [type, values] = der.readSeq(attr, 'attribute', 2, 2);
    if (der.readOid(type, 'attribute type') !== OID.extensionRequest) continue;
    const [exts] = der.children(values, 'extensionRequest values', 1, 1);
    for (const e of der.readSeq(exts, 'extensions', 0, 64)) {
      const parts = der.readSeq(e, 'extension', 2, 3);
      if (der.readOid(parts[0], 'extnID') !== OID.subjectAltName) continue;
      const value = der.readOctets(parts[parts.length - 1], 'extnValue');
      Object.assign(requested, readGeneralNames(der.readSeq(der.decode(value, MAX_CSR_DER), 'subjectAltName', 1, 64)));
    }
  }
  const subjectCn = commonNameOf(subject!);
  return {
    ok: true,
    value:
      subjectCn === undefined
        ? { publicKey, spki, key: key.value, requested }
        : { publicKey, spki, key: key.value, subjectCn, requested },
  };
}

function commonNameOf(name: der.Node): string | undefined {
  for (const rdn of der.readSeq(name, 'subject')) {
    for (const atv of der.children(rdn, 'RDN', 1, 16)) {
      const [type, value] = der.readSeq(atv, 'attribute', 2, 2);
      if (der.readOid(type, 'attribute type') === OID.commonName && value && !value.constructed) {
        return der.utf8Content(der.content(value), 'commonName', 256);
      }
    }
  }
  return undefined;
}
