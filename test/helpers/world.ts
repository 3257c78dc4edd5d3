/**
 * World: an in-process installation of SPEC §2 for tests. It mints, with lib/pki and lib/sshcert, the instance
 * CAs and any number of org CA sets (each org CA its own root: nothing shared between orgs), and every
 * certificate a test needs: proxy TLS server cert + SSH host cert, gateway SSH user cert + inner TLS server
 * cert, platform outer client cert (route extension) and inner client cert (access grant).
 *
 *   const world = new World();                        // trust domain "example.test", real time
 *   const gw = world.gatewaySsh({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
 *   const bad = world.gatewaySsh({ ..., expired: true });          // or ca: world.stray.sshClient, type: 'host'
 *   world.advance(3600_000);                          // the injected clock; pass `world.now` to code under test
 *
 * Knobs on every mint: `at` (issue time), `lifetimeSec`, `expired`, `notYetValid`, `ca` (sign with another CA,
 * e.g. `world.stray.*` that nobody trusts, or another org's), `key` (reuse a key pair: renewal). Keys are
 * ECDSA P-256 (X.509) and Ed25519 (SSH): fast, so a test can mint hundreds.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { unwrap } from '../../lib/errors/codes.js';
import { type CaIssuer, createRootCa, type IssuedCert, loadIssuer } from '../../lib/pki/ca.js';
import type { AccessGrant, GrantMode, GrantTarget } from '../../lib/pki/grant.js';
import { gatewayUri, identityUri, instanceProxyUri, orgProxyUri } from '../../lib/pki/identity.js';
import { generateKeyPairSync as generatePkiKeyPair, privateKeyPem } from '../../lib/pki/keys.js';
import {
  issueGatewayServerCert,
  issuePlatformInnerClientCert,
  issuePlatformOuterClientCert,
  issueProxyServerCert,
} from '../../lib/pki/profiles.js';
import {
  type CertType,
  formatCertificate,
  formatPublicKey,
  parseCertificate,
  publicKeyBlob,
  type SshCertificate,
  signCertificate,
  toOpenSshPrivateKey,
} from '../../lib/sshcert/index.js';

export type Scope = 'instance' | 'org';

export interface X509Ca {
  name: string;
  issuer: CaIssuer;
  /** The CA certificate, PEM (what peers put in their trust lists). */
  pem: string;
}

export interface SshCa {
  name: string;
  privateKey: KeyObject;
  /** Public key blob (what lib/sshwire takes as a trusted CA key). */
  publicBlob: Buffer;
  /** OpenSSH text form, for TrustedUserCAKeys / `@cert-authority` lines. */
  publicLine: string;
}

/** The four CAs of one kind of proxy (instance, or one org's). */
export interface ProxyCas {
  sshClient: SshCa;
  sshServer: SshCa;
  pkiClient: X509Ca;
  pkiServer: X509Ca;
}

export interface OrgCas extends ProxyCas {
  orgId: string;
  gatewayClient: X509Ca;
  gatewayServer: X509Ca;
}

export interface TlsCredentials {
  uri: string;
  key: KeyObject;
  keyPem: string;
  /** The leaf, PEM (every CA here is a root, so the chain is the leaf alone). */
  certPem: string;
  /** The issuing CA, PEM. */
  caPem: string;
  issued: IssuedCert;
}

export interface SshCredentials {
  key: KeyObject;
  /** OpenSSH private key text (ssh2 and ssh read it). */
  privateKey: string;
  /** The certificate blob and its OpenSSH text line. */
  certificate: Buffer;
  certificateLine: string;
  cert: SshCertificate;
}

export interface Validity {
  /** Issue time; default world.now(). */
  at?: Date;
  lifetimeSec?: number;
  /** Issued so that it expired two minutes ago. */
  expired?: boolean;
  /** Issued so that it becomes valid in an hour. */
  notYetValid?: boolean;
}

export interface X509Knobs extends Validity {
  ca?: X509Ca;
  key?: KeyObject;
}

export interface SshKnobs extends Validity {
  ca?: SshCa;
  key?: KeyObject;
  principals?: string[];
  keyId?: string;
  type?: CertType;
  extensions?: Record<string, string>;
  criticalOptions?: Record<string, string>;
}

export interface WorldOptions {
  trustDomain?: string;
  /** Fixed start time; default: follow the real clock (plus `advance` offsets). */
  at?: Date;
}

const SKEW_SEC = 60; // backdate, as lib/pki's `validity` does

export class World {
  readonly trustDomain: string;
  readonly instance: ProxyCas;
  /** CAs that no one trusts: the "signed by another CA" variants. */
  readonly stray: OrgCas;
  readonly #orgs = new Map<string, OrgCas>();
  #fixedMs: number | undefined;
  #offsetMs = 0;

  constructor(options: WorldOptions = {}) {
    this.trustDomain = options.trustDomain ?? 'example.test';
    this.#fixedMs = options.at?.getTime();
    this.instance = this.#proxyCas('instance');
    this.stray = this.#orgCas('stray');
  }

  /** The injected clock: bound, so `now: world.now` can be handed to code under test. */
  readonly now = (): Date => new Date(this.nowMs());
  readonly nowMs = (): number => (this.#fixedMs ?? Date.now()) + this.#offsetMs;

  advance(ms: number): void {
    this.#offsetMs += ms;
  }

  /** An org's CA set, created (six independent roots) on first use. */
  org(orgId: string): OrgCas {
    let cas = this.#orgs.get(orgId);
    if (!cas) {
      cas = this.#orgCas(orgId);
      this.#orgs.set(orgId, cas);
    }
    return cas;
  }

  proxyCas(scope: Scope, orgId?: string): ProxyCas {
    if (scope === 'instance') return this.instance;
    if (!orgId) throw new Error('world: an org proxy scope needs orgId');
    return this.org(orgId);
  }

  /** What a proxy of this scope trusts (the enrollment response's `trust`). */
  proxyTrust(scope: Scope, orgId?: string): { sshUserCaKeys: Buffer[]; pkiClientCaPems: string[] } {
    const cas = this.proxyCas(scope, orgId);
    return { sshUserCaKeys: [cas.sshClient.publicBlob], pkiClientCaPems: [cas.pkiClient.pem] };
  }

  // ---- proxy ---------------------------------------------------------------------------------------------

  proxyUri(scope: Scope, proxyId: string, orgId?: string): string {
    return scope === 'instance'
      ? instanceProxyUri(this.trustDomain, proxyId)
      : orgProxyUri(this.trustDomain, orgId ?? '', proxyId);
  }

  proxyTls(
    o: { scope: Scope; orgId?: string; proxyId: string; dnsNames?: string[]; ipAddresses?: string[] } & X509Knobs,
  ): TlsCredentials {
    const uri = this.proxyUri(o.scope, o.proxyId, o.orgId);
    const ca = o.ca ?? this.proxyCas(o.scope, o.orgId).pkiServer;
    return this.#x509(ca, o, (issuer, subjectKey, now, lifetimeSec) =>
      issueProxyServerCert(issuer, {
        subjectKey,
        uri,
        now,
        lifetimeSec,
        dnsNames: o.dnsNames ?? ['localhost'],
        ipAddresses: o.ipAddresses ?? ['127.0.0.1'],
      }),
    );
  }

  proxySshHost(o: { scope: Scope; orgId?: string; proxyId: string; hostnames?: string[] } & SshKnobs): SshCredentials {
    return this.#ssh(o.ca ?? this.proxyCas(o.scope, o.orgId).sshServer, {
      type: 'host',
      keyId: this.proxyUri(o.scope, o.proxyId, o.orgId),
      principals: o.hostnames ?? ['localhost', '127.0.0.1'],
      lifetimeSec: 30 * 24 * 3600,
      ...o,
    });
  }

  // ---- gateway -------------------------------------------------------------------------------------------

  gatewayUri(orgId: string, gatewayId: string): string {
    return gatewayUri(this.trustDomain, orgId, gatewayId);
  }

  /** SPEC §3: principal = gatewayId, key id = gateway URI, only permit-port-forwarding, ≤ 24 h. */
  gatewaySsh(o: { orgId: string; gatewayId: string; scope: Scope } & SshKnobs): SshCredentials {
    return this.#ssh(o.ca ?? this.proxyCas(o.scope, o.orgId).sshClient, {
      type: 'user',
      keyId: this.gatewayUri(o.orgId, o.gatewayId),
      principals: [o.gatewayId],
      extensions: { 'permit-port-forwarding': '' },
      lifetimeSec: 24 * 3600,
      ...o,
    });
  }

  gatewayInnerTls(o: { orgId: string; gatewayId: string } & X509Knobs): TlsCredentials {
    const uri = this.gatewayUri(o.orgId, o.gatewayId);
    return this.#x509(o.ca ?? this.org(o.orgId).gatewayServer, o, (issuer, subjectKey, now, lifetimeSec) =>
      issueGatewayServerCert(issuer, { subjectKey, uri, now, lifetimeSec }),
    );
  }

  // ---- platform ------------------------------------------------------------------------------------------

  /** Outer client cert for a proxy of `scope`: the route extension names `routeOrgId`/`routeGatewayId`. */
  platformOuter(
    o: {
      orgId: string;
      gatewayId: string;
      scope: Scope;
      identityId?: string;
      /** Route to name instead of (orgId, gatewayId): the identity stays in orgId. */
      routeGatewayId?: string;
    } & X509Knobs,
  ): TlsCredentials {
    const uri = identityUri(this.trustDomain, o.orgId, o.identityId ?? 'platform');
    const route = { version: 1 as const, orgId: o.orgId, gatewayId: o.routeGatewayId ?? o.gatewayId };
    return this.#x509(o.ca ?? this.proxyCas(o.scope, o.orgId).pkiClient, o, (issuer, subjectKey, now, lifetimeSec) =>
      issuePlatformOuterClientCert(issuer, { subjectKey, uri, now, lifetimeSec, route }),
    );
  }

  /** Inner client cert (org gateway client CA) carrying an access grant; lifetime = the grant's. */
  platformInner(
    o: {
      orgId: string;
      gatewayId: string;
      identityId?: string;
      target?: GrantTarget;
      modes?: GrantMode[];
      grantId?: string;
      /** Replace any grant field (e.g. another gatewayId). */
      grant?: Partial<AccessGrant>;
    } & X509Knobs,
  ): TlsCredentials & { grant: AccessGrant } {
    const actor = identityUri(this.trustDomain, o.orgId, o.identityId ?? 'platform');
    const at = this.#issueTime(o, o.lifetimeSec ?? 300);
    const grant: AccessGrant = {
      version: 1,
      grantId: o.grantId ?? `grant-${Math.random().toString(36).slice(2, 10)}`,
      orgId: o.orgId,
      gatewayId: o.gatewayId,
      actor,
      target: o.target ?? { host: '127.0.0.1', port: 5432 },
      notAfter: Math.floor(at.getTime() / 1000) + (o.lifetimeSec ?? 300),
      ...(o.modes ? { modes: o.modes } : {}),
      ...o.grant,
    };
    const creds = this.#x509(o.ca ?? this.org(o.orgId).gatewayClient, o, (issuer, subjectKey, now, lifetimeSec) =>
      issuePlatformInnerClientCert(issuer, { subjectKey, uri: actor, now, lifetimeSec, grant }),
    );
    return { ...creds, grant };
  }

  // ---- internals -----------------------------------------------------------------------------------------

  #issueTime(v: Validity, lifetimeSec: number): Date {
    const now = this.nowMs();
    if (v.at) return v.at;
    if (v.expired) return new Date(now - (lifetimeSec + 2 * SKEW_SEC) * 1000);
    if (v.notYetValid) return new Date(now + 3600_000);
    return new Date(now);
  }

  #x509(
    ca: X509Ca,
    o: X509Knobs,
    issue: (issuer: CaIssuer, subjectKey: KeyObject, now: Date, lifetimeSec: number) => ReturnType<typeof createRootCa>,
  ): TlsCredentials {
    const lifetimeSec = o.lifetimeSec ?? 3600;
    const key = o.key ?? generatePkiKeyPair('ecdsa-p256').privateKey;
    const issued = unwrap(issue(ca.issuer, createPublicKey(key), this.#issueTime(o, lifetimeSec), lifetimeSec));
    return { uri: uriOf(issued), key, keyPem: privateKeyPem(key), certPem: issued.pem, caPem: ca.pem, issued };
  }

  #ssh(ca: SshCa, o: SshKnobs & { type: CertType; keyId: string; principals: string[] }): SshCredentials {
    const lifetimeSec = o.lifetimeSec ?? 3600;
    const key = o.key ?? generateKeyPairSync('ed25519').privateKey;
    const atSec = Math.floor(this.#issueTime(o, lifetimeSec).getTime() / 1000);
    const certificate = signCertificate(
      {
        publicKey: publicKeyBlob(key),
        type: o.type,
        keyId: o.keyId,
        principals: o.principals,
        validAfter: BigInt(atSec - SKEW_SEC),
        validBefore: BigInt(atSec + lifetimeSec),
        extensions: o.extensions ?? {},
        criticalOptions: o.criticalOptions ?? {},
      },
      ca.privateKey,
    );
    return {
      key,
      privateKey: toOpenSshPrivateKey(key),
      certificate,
      certificateLine: formatCertificate(certificate, o.keyId),
      cert: unwrap(parseCertificate(certificate)),
    };
  }

  #proxyCas(label: string): ProxyCas {
    return {
      sshClient: sshCa(`${label} proxy SSH client CA`),
      sshServer: sshCa(`${label} proxy SSH server CA`),
      pkiClient: x509Ca(`${label} proxy PKI client CA`, this.nowMs()),
      pkiServer: x509Ca(`${label} proxy PKI server CA`, this.nowMs()),
    };
  }

  #orgCas(orgId: string): OrgCas {
    return {
      orgId,
      ...this.#proxyCas(`org ${orgId}`),
      gatewayClient: x509Ca(`org ${orgId} gateway client CA`, this.nowMs()),
      gatewayServer: x509Ca(`org ${orgId} gateway server CA`, this.nowMs()),
    };
  }
}

function sshCa(name: string): SshCa {
  const privateKey = generateKeyPairSync('ed25519').privateKey;
  const publicBlob = publicKeyBlob(privateKey);
  return { name, privateKey, publicBlob, publicLine: formatPublicKey(publicBlob, name.replaceAll(' ', '-')) };
}

/** A root valid from a day before `nowMs` for ten years, so backdated test certs still fit inside it. */
function x509Ca(name: string, nowMs: number): X509Ca {
  const privateKey = generatePkiKeyPair('ecdsa-p256').privateKey;
  const root = unwrap(
    createRootCa({
      privateKey,
      subject: { organization: 'Infisical test', commonName: name.slice(0, 64) },
      now: new Date(nowMs),
      lifetimeSec: 10 * 365 * 24 * 3600,
      backdateSec: 24 * 3600,
    }),
  );
  return { name, issuer: unwrap(loadIssuer(root.pem, privateKey)), pem: root.pem };
}

/** The URI SAN, read back from the issued cert rather than trusted from our own input. */
function uriOf(issued: IssuedCert): string {
  const m = /URI:([^\s,]+)/.exec(new X509Certificate(issued.der).subjectAltName ?? '');
  return m?.[1] ?? '';
}
