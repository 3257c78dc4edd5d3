/** Test fixtures for lib/pki: a root → intermediate hierarchy, leaf issuance, and an openssl CLI runner. */
import { spawnSync } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Verdict } from '../../lib/errors/codes.js';
import { unwrap } from '../../lib/errors/codes.js';
import type { NameSpec } from '../../lib/pki/build.js';
import {
  type CaIssuer,
  createRootCa,
  type IssuedCert,
  issueCertificate,
  type Lifetime,
  loadIssuer,
  validity,
} from '../../lib/pki/ca.js';
import { generateKeyPairSync, type KeyAlgorithm, type KeyPair } from '../../lib/pki/keys.js';

export const T0 = new Date('2030-06-01T12:00:00Z');
export const TD = 'td.example';

export interface Hierarchy {
  rootKey: KeyPair;
  root: IssuedCert;
  rootIssuer: CaIssuer;
  interKey: KeyPair;
  inter: IssuedCert;
  issuer: CaIssuer;
}

/** An intermediate CA signed by `issuer` (the suite's CAs are roots; the verifier must still walk intermediates). */
export function createIntermediateCa(
  issuer: CaIssuer,
  spec: { subjectKey: KeyObject; subject: NameSpec; pathLen?: number } & Lifetime,
): Verdict<IssuedCert> {
  return issueCertificate(issuer, {
    subjectKey: spec.subjectKey,
    subject: spec.subject,
    ...validity(spec),
    ca: spec.pathLen === undefined ? {} : { pathLen: spec.pathLen },
    keyUsage: ['keyCertSign', 'cRLSign'],
  });
}

/** Root (pathLen 1) → intermediate (pathLen 0), valid for a year around T0. */
export function hierarchy(alg: KeyAlgorithm = 'ecdsa-p256', name = 'Acme', now = T0): Hierarchy {
  const rootKey = generateKeyPairSync(alg);
  const root = unwrap(
    createRootCa({
      privateKey: rootKey.privateKey,
      subject: { organization: name, commonName: `${name} Root` },
      now: new Date(now.getTime() - 86400_000),
      lifetimeSec: 366 * 86400,
      pathLen: 1,
    }),
  );
  const rootIssuer = unwrap(loadIssuer(root.pem, rootKey.privateKey));
  const interKey = generateKeyPairSync(alg);
  const inter = unwrap(
    createIntermediateCa(rootIssuer, {
      subjectKey: interKey.publicKey,
      subject: { organization: name, commonName: `${name} Intermediate` },
      now: new Date(now.getTime() - 86400_000),
      lifetimeSec: 365 * 86400,
      pathLen: 0,
    }),
  );
  const issuer = unwrap(loadIssuer(inter.pem, interKey.privateKey));
  return { rootKey, root, rootIssuer, interKey, inter, issuer };
}

/** A temporary directory with helpers to write files and run openssl in it. */
export class OpensslDir {
  readonly dir = mkdtempSync(join(tmpdir(), 'pki-test-'));
  path(name: string): string {
    return join(this.dir, name);
  }
  write(name: string, data: string | Buffer): string {
    writeFileSync(this.path(name), data);
    return this.path(name);
  }
  writeKey(name: string, key: KeyObject): string {
    return this.write(name, key.export({ type: 'pkcs8', format: 'pem' }) as string);
  }
  /** Runs openssl; returns stdout+stderr; throws with the output on a non-zero exit. */
  run(args: string[], input?: Buffer | string): string {
    const r = spawnSync('openssl', args, { cwd: this.dir, input, timeout: 30_000 });
    const out = `${r.stdout?.toString() ?? ''}${r.stderr?.toString() ?? ''}`;
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.status}): ${out}`);
    return out;
  }
  /** Like run, but returns exit status and output instead of throwing. */
  tryRun(args: string[]): { ok: boolean; out: string } {
    try {
      return { ok: true, out: this.run(args) };
    } catch (err) {
      return { ok: false, out: (err as Error).message };
    }
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
