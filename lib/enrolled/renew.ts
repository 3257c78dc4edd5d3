/**
 * `infisical-gateway renew` / `infisical-proxy renew`: renew the stored certificates now, also while `serve`
 * runs on the same state directory (serve sees the new generation within seconds and reloads
 * make-before-break). The CA keeps one current certificate per component: renewing retires the one before.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { GatewayError } from '../errors/codes.js';
import type { CaClient } from '../protocol/ca-client.js';

interface Renewable {
  caUrl: string;
  caFingerprint: string;
  tlsChainPem: string;
  notAfter: string;
}

export interface RenewResult {
  [key: string]: unknown;
  previousSerial: string;
  serial: string;
  notAfter: string;
  database: string;
}

export async function renewStoredEnrollment<S extends Renewable>(
  store: { load(): S; saveEnrollment(s: S): void; caClient(s: S): CaClient; db: { name: string } },
  renew: (client: CaClient, current: S) => Promise<S>,
): Promise<RenewResult> {
  const current = store.load();
  const client = store.caClient(current);
  const next = await renew(client, current);
  store.saveEnrollment(next);
  return {
    previousSerial: serialOf(current.tlsChainPem),
    serial: serialOf(next.tlsChainPem),
    notAfter: next.notAfter,
    database: store.db.name,
  };
}

function serialOf(chainPem: string): string {
  return new X509Certificate(chainPem).serialNumber.toLowerCase();
}

/**
 * Refuses, before anything is created or a sealing key is looked for, a state directory (missing or not) that
 * holds no enrollment database: `serve`, `renew` and `status` call it first. (A database without its enrollment
 * row is refused by the store's load() with the same words.)
 */
export function requireEnrolled(databasePath: string, role: 'gateway' | 'proxy'): void {
  if (!existsSync(databasePath)) {
    throw new GatewayError(
      'E_CONFIG_INVALID',
      `${dirname(databasePath)}: not enrolled: run \`infisical-${role} enroll\` first (there is no ${basename(databasePath)})`,
    );
  }
}
