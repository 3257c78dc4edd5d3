/**
 * The keyring: every certificate authority of the instance and of each org (SPEC §2), created here, sealed at
 * rest (AES-256-GCM, bound to the CA's id), unsealed on first use and cached. Each per-org CA is its own root,
 * with its own key: nothing is shared between two orgs, or between an org and the instance.
 *
 * X.509 CAs are ECDSA P-256 roots; SSH CAs and the revocation-feed key are Ed25519.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import { GatewayError, unwrap } from '../errors/codes.js';
import { type CaIssuer, createRootCa, issueCertificate, loadIssuer, validity } from '../pki/ca.js';
import { generateKeyPairSync as generateX509KeyPair, privateKeyPem } from '../pki/keys.js';
import { OID, parseCertificate, pemBlocks } from '../pki/x509.js';
import { formatPublicKey, publicKeyBlob } from '../sshcert/index.js';
import type { Sealer } from '../store/sealed.js';
import type { AuthorityRow, CaStore } from './store.js';
import { initialRotation, type RotationState, signerOf, trustedOf } from './store-rotations.js';

export const PROXY_CA_PURPOSES = [
  'proxy-ssh-client',
  'proxy-ssh-server',
  'proxy-pki-client',
  'proxy-pki-server',
] as const;
export const ORG_CA_PURPOSES = [...PROXY_CA_PURPOSES, 'gateway-client', 'gateway-server'] as const;
export type CaPurpose = (typeof ORG_CA_PURPOSES)[number];
/** Every CA that `rotate` can replace: the proxy and gateway CAs, and the CA API's own root (instance). */
export type RotatablePurpose = CaPurpose | 'api-root';
const SSH_PURPOSES = new Set<string>(['proxy-ssh-client', 'proxy-ssh-server']);

const CA_LIFETIME_SEC = 10 * 365 * 24 * 3600;
export const API_CERT_LIFETIME_SEC = 2 * 365 * 24 * 3600;
const FEED_ID = 'instance:revocation-feed';
const API_ROOT_ID = 'instance:api-root';
const API_SERVER_ID = 'instance:api-server';

/** The id of a CA row: "instance:<purpose>" or "org:<orgId>:<purpose>" (ids cannot contain ':'). */
export function authorityId(orgId: string | null, purpose: string): string {
  return orgId === null ? `instance:${purpose}` : `org:${orgId}:${purpose}`;
}

export interface SshAuthority {
  id: string;
  privateKey: KeyObject;
  /** OpenSSH text form of the CA public key, as sshd's TrustedUserCAKeys / known_hosts @cert-authority use it. */
  publicKeyText: string;
}

export interface ApiServerCredentials {
  /** Leaf then the API root CA. */
  certificateChainPem: string;
  privateKeyPem: string;
  /** SHA-256 of the leaf DER, lowercase hex (pinned by clients enrolled before root pinning). */
  fingerprint256: string;
  /** SHA-256 of the API root CA's DER: what clients pin (`apiFingerprint`); it survives `api-cert`. */
  rootFingerprint256: string;
  notAfter: Date;
}

/** The value cached under `id`, made (and kept) on first use: unsealing a CA key costs a decryption. */
function cachedIn<T>(cache: Map<string, T>, id: string, make: () => T): T {
  let value = cache.get(id);
  if (value === undefined) {
    value = make();
    cache.set(id, value);
  }
  return value;
}

export class Keyring {
  readonly #store: CaStore;
  readonly #sealer: Sealer;
  readonly #x509 = new Map<string, CaIssuer>();
  readonly #ssh = new Map<string, SshAuthority>();
  readonly #fingerprints = new Map<string, string>();
  #feed: KeyObject | undefined;

  constructor(store: CaStore, sealer: Sealer) {
    this.#store = store;
    this.#sealer = sealer;
  }

  /** The four instance proxy CAs, the API root and the revocation-feed key. Call inside a transaction. */
  createInstance(trustDomain: string, now: Date): void {
    for (const purpose of PROXY_CA_PURPOSES) this.#create(null, purpose, trustDomain, now);
    this.#createX509Root(
      API_ROOT_ID,
      null,
      'api-root',
      { organization: label(trustDomain), commonName: 'CA API root' },
      now,
    );
    const feed = generateKeyPairSync('ed25519');
    this.#insert(FEED_ID, null, 'revocation-feed', 'ed25519', publicPem(feed.publicKey), feed.privateKey, now, null);
  }

  /** The six CAs of one org, each an independent root. Call inside a transaction. */
  createOrg(orgId: string, trustDomain: string, now: Date): void {
    for (const purpose of ORG_CA_PURPOSES) this.#create(orgId, purpose, trustDomain, now);
  }

  /**
   * Where a CA's rotation stands (rotation.ts): which of its rows signs and which are trusted. Read per call, so
   * a phase moved by the admin CLI applies to the next certificate this process issues.
   */
  rotation(orgId: string | null, purpose: RotatablePurpose): RotationState {
    const id = authorityId(orgId, purpose);
    return this.#store.rotations.get(id) ?? initialRotation(id, orgId, purpose);
  }

  /** The row id of the CA that signs new certificates of this purpose now (recorded with each certificate). */
  signerId(orgId: string | null, purpose: RotatablePurpose): string {
    return signerOf(this.rotation(orgId, purpose));
  }

  /** An X.509 CA ready to sign (the signer of its rotation). Throws E_NOT_FOUND when missing or destroyed. */
  x509(orgId: string | null, purpose: CaPurpose | 'api-root'): CaIssuer {
    return this.#issuer(this.signerId(purpose === 'api-root' ? null : orgId, purpose));
  }

  #issuer(id: string): CaIssuer {
    return cachedIn(this.#x509, id, () => {
      const row = this.#row(id, 'x509');
      return unwrap(loadIssuer(row.public, this.#privateKey(row)));
    });
  }

  /** The signing CA's certificate PEM (no private key needed). */
  x509Pem(orgId: string | null, purpose: CaPurpose): string {
    return this.#row(this.signerId(orgId, purpose), 'x509').public;
  }

  /** Every CA certificate of this purpose trusted now, the signer first (two while a rotation runs). */
  x509Pems(orgId: string | null, purpose: CaPurpose): string[] {
    return trustedOf(this.rotation(orgId, purpose)).map((id) => this.#row(id, 'x509').public);
  }

  ssh(orgId: string | null, purpose: CaPurpose): SshAuthority {
    const id = this.signerId(orgId, purpose);
    return cachedIn(this.#ssh, id, () => {
      const row = this.#row(id, 'ssh');
      return { id, privateKey: this.#privateKey(row), publicKeyText: row.public };
    });
  }

  sshPublic(orgId: string | null, purpose: CaPurpose): string {
    return this.#row(this.signerId(orgId, purpose), 'ssh').public;
  }

  /** Every SSH CA key of this purpose trusted now, the signer first. */
  sshPublics(orgId: string | null, purpose: CaPurpose): string[] {
    return trustedOf(this.rotation(orgId, purpose)).map((id) => this.#row(id, 'ssh').public);
  }

  /** The public part of any CA row (null when there is no such row). */
  publicOf(rowId: string): string | null {
    return this.#store.issuance.authority(rowId)?.public ?? null;
  }

  /** Creates the new CA of a rotation under `rowId`. Call inside a transaction. */
  createSuccessor(
    orgId: string | null,
    purpose: RotatablePurpose,
    rowId: string,
    trustDomain: string,
    now: Date,
  ): void {
    if (purpose !== 'api-root') {
      this.#create(orgId, purpose, trustDomain, now, rowId);
      return;
    }
    const generation = rowId.slice(rowId.lastIndexOf('@') + 1);
    const subject = { organization: label(trustDomain), commonName: `CA API root g${generation}` };
    this.#createX509Root(rowId, null, 'api-root', subject, now);
  }

  /** SHA-256 fingerprints of every CA API root trusted now (two while the API root rotates): clients pin these. */
  apiRootFingerprints(): string[] {
    // Asked at every feed answer: each root row is parsed once (rows never change; only which are trusted does).
    return trustedOf(this.rotation(null, 'api-root')).map((id) => {
      let fp = this.#fingerprints.get(id);
      if (fp === undefined) {
        fp = fingerprintOfPem(this.#row(id, 'x509').public);
        this.#fingerprints.set(id, fp);
      }
      return fp;
    });
  }

  /** The DNS names and IP addresses of the API server certificate in use (re-issued as they are on rotation). */
  apiServerNames(): { dnsNames: string[]; ipAddresses: string[] } {
    const leaf = parseCertificate(pemBlocks(this.#row(API_SERVER_ID, 'x509').public, 'CERTIFICATE', 1)[0]!);
    return { dnsNames: [...leaf.san.dns], ipAddresses: [...leaf.san.ips] };
  }

  /** Destroys one CA's private key (a rotation's retired or rolled-back CA); its public part stays on record. */
  destroyKey(rowId: string): void {
    this.#store.issuance.destroyAuthorityKey(rowId);
    this.#x509.delete(rowId);
    this.#ssh.delete(rowId);
  }

  feedKey(): KeyObject {
    this.#feed ??= this.#privateKey(this.#row(FEED_ID, 'ed25519'));
    return this.#feed;
  }

  feedPublicKeyPem(): string {
    return this.#row(FEED_ID, 'ed25519').public;
  }

  /** Drops cached keys of an org (after its deletion). */
  forget(orgId: string): void {
    const prefix = `${authorityId(orgId, '')}`;
    for (const cache of [this.#x509, this.#ssh]) {
      for (const id of cache.keys()) if (id.startsWith(prefix)) cache.delete(id);
    }
  }

  /**
   * Issues (or replaces) the API server certificate: a key generated here, a leaf from the API root with the
   * given DNS names and IP addresses. Clients pin its SHA-256.
   */
  issueApiServerCertificate(
    names: { dnsNames: string[]; ipAddresses: string[] },
    now: Date,
    lifetimeSec = API_CERT_LIFETIME_SEC,
  ): ApiServerCredentials {
    const root = this.x509(null, 'api-root');
    const key = generateX509KeyPair('ecdsa-p256');
    const leaf = unwrap(
      issueCertificate(root, {
        subjectKey: key.publicKey,
        subject: { commonName: 'infisical-ca API' },
        ...validity({ now, lifetimeSec }),
        keyUsage: ['digitalSignature'],
        extKeyUsage: [OID.serverAuth],
        san: names,
      }),
    );
    this.#store.issuance.deleteAuthority(API_SERVER_ID);
    this.#insert(API_SERVER_ID, null, 'api-server', 'x509', leaf.pem, key.privateKey, now, leaf.notAfter.getTime());
    return this.apiServerCredentials();
  }

  apiServerCredentials(): ApiServerCredentials {
    const row = this.#row(API_SERVER_ID, 'x509');
    const key = this.#privateKey(row);
    const root = this.#apiRootOf(row.public);
    const leafDer = pemBlocks(row.public, 'CERTIFICATE', 1)[0]!;
    const parsed = parseCertificate(leafDer);
    return {
      certificateChainPem: row.public + root,
      privateKeyPem: privateKeyPem(key),
      fingerprint256: parsed.fingerprint256,
      rootFingerprint256: parseCertificate(pemBlocks(root, 'CERTIFICATE', 1)[0]!).fingerprint256,
      notAfter: parsed.notAfter,
    };
  }

  /** The API root (of those trusted, else the first) that issued this leaf. */
  #apiRootOf(leafPem: string): string {
    const leaf = new X509Certificate(leafPem);
    const roots = trustedOf(this.rotation(null, 'api-root')).map((id) => this.#row(id, 'x509').public);
    return (
      roots.find(
        (pem) => leaf.checkIssued(new X509Certificate(pem)) && leaf.verify(new X509Certificate(pem).publicKey),
      ) ?? roots[0]!
    );
  }

  #create(
    orgId: string | null,
    purpose: CaPurpose,
    trustDomain: string,
    now: Date,
    id = authorityId(orgId, purpose),
  ): void {
    if (SSH_PURPOSES.has(purpose)) {
      const pair = generateKeyPairSync('ed25519');
      const text = formatPublicKey(publicKeyBlob(pair.publicKey), id);
      this.#insert(id, orgId, purpose, 'ssh', text, pair.privateKey, now, null);
      return;
    }
    // A rotation's new CA gets its own subject (" g2"), so chains are told apart by name as well as by key.
    const generation = id.includes('@') ? ` g${id.slice(id.lastIndexOf('@') + 1)}` : '';
    const title = `${orgId === null ? 'instance' : 'org'} ${purpose.replace('-pki-', ' PKI ').replaceAll('-', ' ')} CA${generation}`;
    this.#createX509Root(id, orgId, purpose, { organization: label(orgId ?? trustDomain), commonName: title }, now);
  }

  #createX509Root(
    id: string,
    orgId: string | null,
    purpose: string,
    subject: { organization: string; commonName: string },
    now: Date,
  ): void {
    const pair = generateX509KeyPair('ecdsa-p256');
    const cert = unwrap(createRootCa({ privateKey: pair.privateKey, subject, now, lifetimeSec: CA_LIFETIME_SEC }));
    this.#insert(id, orgId, purpose, 'x509', cert.pem, pair.privateKey, now, cert.notAfter.getTime());
  }

  #insert(
    id: string,
    orgId: string | null,
    purpose: string,
    kind: AuthorityRow['kind'],
    pub: string,
    privateKey: KeyObject,
    now: Date,
    notAfter: number | null,
  ): void {
    const der = privateKey.export({ type: 'pkcs8', format: 'der' });
    this.#store.issuance.insertAuthority({
      id,
      orgId,
      purpose,
      kind,
      public: pub,
      sealedKey: this.#sealer.seal(der, sealContext(id)),
      createdAt: now.getTime(),
      notAfter,
    });
  }

  #row(id: string, kind: AuthorityRow['kind']): AuthorityRow {
    const row = this.#store.issuance.authority(id);
    if (!row || row.kind !== kind) throw new GatewayError('E_NOT_FOUND', `certificate authority ${id}`);
    return row;
  }

  #privateKey(row: AuthorityRow): KeyObject {
    if (!row.sealedKey) throw new GatewayError('E_NOT_FOUND', `key of ${row.id} was destroyed`);
    const der = this.#sealer.open(row.sealedKey, sealContext(row.id));
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  }
}

function sealContext(id: string): string {
  return `infisical-ca/authority/${id}`;
}

function publicPem(key: KeyObject): string {
  const pub = key.type === 'public' ? key : createPublicKey(key);
  return pub.export({ type: 'spki', format: 'pem' }) as string;
}

/** X.500 attributes are at most 64 characters: long org ids are named by a hash prefix instead. */
function label(name: string): string {
  return name.length <= 64 ? name : `id-${createHash('sha256').update(name).digest('hex').slice(0, 32)}`;
}

function fingerprintOfPem(pem: string): string {
  return parseCertificate(pemBlocks(pem, 'CERTIFICATE', 1)[0]!).fingerprint256;
}
