/** What a fuzz target is, and the seeds (real ssh-keygen and openssl output) every target draws from. */
import type fc from 'fast-check';

/** Plain data, so it crosses into a worker thread: text forms and DER as Uint8Array. */
export interface Seeds {
  ssh: {
    /** Certificate lines ("ssh-ed25519-cert-v01@openssh.com AAAA… comment"), user and host, several key types. */
    certs: string[];
    /** Plain public key lines of every key type, supported or not. */
    publicKeys: string[];
    /** Unencrypted OpenSSH private keys ("-----BEGIN OPENSSH PRIVATE KEY-----"). */
    privateKeys: string[];
    /** The CA public key lines the certificates were signed with. */
    caPublicKeys: string[];
    /** An Ed25519 CA as PKCS#8 PEM, for targets that re-sign what they mutated. */
    caPrivateKeyPem: string;
  };
  x509: {
    /** Root CA certificates (PEM) that the leaves chain to. */
    anchorsPem: string;
    /** Each case: a peer chain, leaf first, as DER. */
    chains: Uint8Array[][];
    /** The key of the first anchor (P-256, PKCS#8 PEM), for re-signing mutated certificates. */
    caKeyPem: string;
    /** DER of the first anchor, whose subject the re-signed certificates name as issuer. */
    caDer: Uint8Array;
    /** CSRs (PEM) with P-256, RSA and Ed25519 keys, some with SANs. */
    csrs: string[];
  };
  /** Config file texts: the sample config of each daemon. */
  configs: { daemon: 'ca' | 'proxy' | 'gateway'; text: string }[];
}

/**
 * One parser under fuzz. `run` calls it; the harness judges what comes back (see harness.ts). `check` states
 * extra properties of a normal outcome (round trips, invariants of an accepted value) and returns a problem.
 */
export interface FuzzTarget<T> {
  name: string;
  /** The lib/ functions it drives. */
  covers: string;
  arbitrary(seeds: Seeds): fc.Arbitrary<T>;
  run(input: T, seeds: Seeds): unknown;
  check?(
    input: T,
    outcome: { threw: false; value: unknown } | { threw: true; error: unknown },
    seeds: Seeds,
  ): string | undefined;
  /** Errors that are this function's documented contract besides GatewayError (e.g. DerError of a raw reader). */
  allowError?(err: unknown): boolean;
  show?(input: T): string;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds targets of every input type
export type AnyTarget = FuzzTarget<any>;
