/**
 * CA rotation driven from the outside (issue 12), as an operator would: `infisical-ca rotate start|next|rollback
 * |status` on the CA's state directory, `next` polled until the CA allows it (it refuses with E_ROTATION_PENDING
 * while a live component has not acknowledged the phase, or while grants or certificates it waits for are still
 * valid), `status --json` polled until nobody is pending.
 *
 * And what the fleet trusts, read from the components themselves (their state databases, SSH certificates read
 * by `ssh-keygen`, X.509 signatures checked with node:crypto), not from the CA's word: for each authority, the
 * key fingerprints of the CAs that signed the certificates the components hold ("signers") and of the CAs they
 * accept from peers ("trusted").
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { CliResult } from '../ca/daemon-helpers.js';
import type { CaHandle, Deployment, GatewayHandle } from './deploy.js';
import { ORG } from './roles.js';

export const PHASES = ['init', 'update_clients', 'update_servers', 'standby'] as const;
export type Phase = (typeof PHASES)[number] | 'rollback';

export interface Authority {
  scope: 'instance' | 'org';
  name: string;
}

/** The CAs whose certificates go to clients (renewed in update_clients) and to servers (update_servers). */
const CLIENT_CAS = new Set(['gateway-client', 'proxy-ssh-client', 'proxy-pki-client']);
const PROXY_CAS = ['proxy-ssh-client', 'proxy-ssh-server', 'proxy-pki-client', 'proxy-pki-server'];
export const ORG_AUTHORITIES: Authority[] = ['gateway-client', 'gateway-server', ...PROXY_CAS].map((name) => ({
  scope: 'org',
  name,
}));
export const INSTANCE_AUTHORITIES: Authority[] = PROXY_CAS.map((name) => ({ scope: 'instance', name }));

export const label = (a: Authority): string => `${a.scope}/${a.name}`;
export const signsClients = (a: Authority): boolean => CLIENT_CAS.has(a.name);

function scopeArgs(a: Pick<Authority, 'scope'>): string[] {
  return a.scope === 'instance' ? ['--instance'] : ['--org', ORG];
}

/** One row of `rotate status --json`. */
export interface RotationStatus {
  authority: string;
  phase: string;
  pending: string[];
  offline: string[];
  [more: string]: unknown;
}

export function rotate(
  ca: CaHandle,
  verb: 'start' | 'next' | 'rollback',
  a: Authority,
  extra: string[] = [],
): Promise<CliResult> {
  return ca.cliResult(['rotate', verb, ...scopeArgs(a), '--authority', a.name, ...extra]);
}

/** What `rotate start|next|rollback --json` prints: the move, and the status after it. */
export interface RotationChange {
  authority: string;
  from: string;
  to: string;
  status: RotationStatus;
}

function changeOf(r: CliResult, what: string): RotationChange {
  const c = JSON.parse(r.stdout) as RotationChange;
  if (typeof c.to !== 'string') throw new Error(`${what} printed no phase: ${r.stdout}`);
  return c;
}

/** `rotate start|rollback`, which must succeed at once. */
export async function rotateNow(
  ca: CaHandle,
  verb: 'start' | 'rollback',
  a: Authority,
  extra: string[] = [],
): Promise<RotationChange> {
  const r = await rotate(ca, verb, a, extra);
  if (r.code !== 0) throw new Error(`rotate ${verb} ${label(a)} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return changeOf(r, `rotate ${verb} ${label(a)}`);
}

/** Every row of `rotate status --json` for the authority's scope (one authority when `a.name` is given). */
export async function rotationStatuses(ca: CaHandle, a: Pick<Authority, 'scope'> & { name?: string }) {
  const r = await ca.cliResult(['rotate', 'status', ...scopeArgs(a), ...(a.name ? ['--authority', a.name] : [])]);
  if (r.code !== 0) throw new Error(`rotate status exited ${r.code}: ${r.stdout}${r.stderr}`);
  const rows = JSON.parse(r.stdout) as unknown;
  if (!Array.isArray(rows)) throw new Error(`rotate status --json printed no array: ${r.stdout}`);
  return rows as RotationStatus[];
}

export async function rotationStatus(ca: CaHandle, a: Authority): Promise<RotationStatus> {
  const rows = await rotationStatuses(ca, a);
  const row = rows.find((r) => r.authority === a.name);
  if (!row) throw new Error(`rotate status has no row for ${label(a)}: ${JSON.stringify(rows)}`);
  return row;
}

/** The status of several authorities, one `rotate status` per scope. */
export async function statusesOf(ca: CaHandle, as: Authority[]): Promise<Map<Authority, RotationStatus>> {
  const out = new Map<Authority, RotationStatus>();
  for (const scope of ['instance', 'org'] as const) {
    const mine = as.filter((a) => a.scope === scope);
    if (mine.length === 0) continue;
    const rows = await rotationStatuses(ca, { scope });
    for (const a of mine) {
      const row = rows.find((r) => r.authority === a.name);
      if (!row) throw new Error(`rotate status has no row for ${label(a)}: ${JSON.stringify(rows)}`);
      out.set(a, row);
    }
  }
  return out;
}

export interface Advanced {
  /** From the first `next` until the one that succeeded. */
  ms: number;
  /** How many times the CA refused (E_ROTATION_PENDING) before it allowed the move. */
  refusals: number;
  /** The last refusal's text (what it waited for). */
  lastRefusal: string;
  /** The phase it moved to. */
  phase: string;
}

/** `rotate next` until the CA allows it: refusals must name E_ROTATION_PENDING (anything else fails at once). */
export async function advance(
  ca: CaHandle,
  a: Authority,
  o: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<Advanced> {
  const start = Date.now();
  const deadline = start + (o.timeoutMs ?? 90_000);
  let refusals = 0;
  let lastRefusal = '';
  for (;;) {
    const r = await rotate(ca, 'next', a);
    if (r.code === 0) {
      const { to } = changeOf(r, `rotate next ${label(a)}`);
      return { ms: Date.now() - start, refusals, lastRefusal, phase: to };
    }
    const text = `${r.stdout}${r.stderr}`.trim();
    if (!/E_ROTATION_PENDING/.test(text)) {
      throw new Error(`rotate next ${label(a)} exited ${r.code} without E_ROTATION_PENDING: ${text}`);
    }
    refusals++;
    lastRefusal = text;
    if (Date.now() > deadline) {
      throw new Error(`rotate next ${label(a)} still refused after ${Date.now() - start} ms: ${text}`);
    }
    await sleep(o.intervalMs ?? 1000);
  }
}

/**
 * Polls `status` until nobody is pending for any of `as` (offline components are not waited for): the ms
 * from the call until each was seen acknowledged, and its last status.
 */
export async function acknowledged(
  ca: CaHandle,
  as: Authority[],
  o: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<Map<Authority, { ms: number; status: RotationStatus }>> {
  const start = Date.now();
  const deadline = start + (o.timeoutMs ?? 60_000);
  const done = new Map<Authority, { ms: number; status: RotationStatus }>();
  for (;;) {
    const waiting = as.filter((a) => !done.has(a));
    const rows = await statusesOf(ca, waiting);
    for (const [a, status] of rows) {
      if (Array.isArray(status.pending) && status.pending.length === 0) done.set(a, { ms: Date.now() - start, status });
    }
    if (done.size === as.length) return done;
    if (Date.now() > deadline) {
      const left = [...rows].filter(([a]) => !done.has(a)).map(([a, s]) => `${label(a)}: ${JSON.stringify(s)}`);
      throw new Error(`still pending after ${Date.now() - start} ms:\n${left.join('\n')}`);
    }
    await sleep(o.intervalMs ?? 250);
  }
}

/** Per authority ("instance/proxy-ssh-client"): CA key fingerprints the fleet holds certificates from, and trusts. */
export type TrustView = Record<string, { signers: string[]; trusted: string[] }>;

/**
 * What the fleet's own state says, for every authority it can show:
 *   proxy-ssh-client  signers: the gateways' SSH user certificates of that scope; trusted: the proxies' user CAs
 *   proxy-ssh-server  signers: the proxies' host certificates; trusted: the gateways' host CAs of that scope
 *   proxy-pki-client  trusted: the proxies' client CAs (its certificates go into grants)
 *   proxy-pki-server  signers: the proxies' TLS certificates
 *   gateway-client    trusted: the gateways' client CAs (its certificates go into grants)
 *   gateway-server    signers: the gateways' TLS certificates
 * Read-only opens beside the running daemons (WAL). `only.gateways`: read these gateways only (default all).
 */
export function trustSnapshot(d: Deployment, only: { gateways?: GatewayHandle[] } = {}): TrustView {
  const view: TrustView = {};
  const add = (key: string, side: 'signers' | 'trusted', fp: string) => {
    const v = view[key] ?? { signers: [], trusted: [] };
    view[key] = v;
    if (!v[side].includes(fp)) v[side] = [...v[side], fp].sort();
  };
  const tmp = mkdtempSync(join(d.dir, 'trust-'));
  try {
    for (const p of d.proxies) {
      const scope = p.scope;
      withDb(join(p.stateDir, 'proxy.db'), (db) => {
        const e = db.prepare('SELECT tls_chain_pem, ssh_host_certificate FROM enrollment WHERE id = 1').get() as {
          tls_chain_pem: string;
          ssh_host_certificate: string;
        };
        add(`${scope}/proxy-pki-server`, 'signers', x509Signer(e.tls_chain_pem, p.name));
        add(`${scope}/proxy-ssh-server`, 'signers', sshSigner(tmp, e.ssh_host_certificate));
        for (const r of db.prepare('SELECT key FROM ssh_user_cas').all() as { key: string }[]) {
          add(`${scope}/proxy-ssh-client`, 'trusted', sshKeyFingerprint(tmp, r.key));
        }
        for (const r of db.prepare('SELECT pem FROM pki_client_cas').all() as { pem: string }[]) {
          add(`${scope}/proxy-pki-client`, 'trusted', spkiFingerprint(new X509Certificate(r.pem)));
        }
      });
    }
    for (const g of only.gateways ?? d.gateways) {
      withDb(join(g.stateDir, 'gateway.db'), (db) => {
        const e = db.prepare('SELECT tls_chain_pem FROM enrollment WHERE id = 1').get() as { tls_chain_pem: string };
        add('org/gateway-server', 'signers', x509Signer(e.tls_chain_pem, g.name));
        const certs = db.prepare('SELECT scope, certificate FROM ssh_certificates').all() as {
          scope: string;
          certificate: string;
        }[];
        for (const r of certs) add(`${r.scope}/proxy-ssh-client`, 'signers', sshSigner(tmp, r.certificate));
        for (const r of db.prepare('SELECT scope, key FROM ssh_host_cas').all() as { scope: string; key: string }[]) {
          add(`${r.scope}/proxy-ssh-server`, 'trusted', sshKeyFingerprint(tmp, r.key));
        }
        for (const r of db.prepare('SELECT pem FROM gateway_client_cas').all() as { pem: string }[]) {
          add('org/gateway-client', 'trusted', spkiFingerprint(new X509Certificate(r.pem)));
        }
      });
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  // A scope with no proxy has no one to trust its proxy CAs: only what the gateways hold for it remains.
  const scopes = new Set(d.proxies.map((p) => p.scope));
  for (const key of Object.keys(view)) {
    const [scope, name] = key.split('/') as [string, string];
    if (PROXY_CAS.includes(name) && !scopes.has(scope as 'instance' | 'org')) delete view[key];
  }
  return view;
}

/** Every CA key fingerprint a view shows for one authority (signers and trusted together). */
export function keysOf(view: TrustView, a: Authority): string[] {
  const v = view[label(a)];
  return [...new Set([...(v?.signers ?? []), ...(v?.trusted ?? [])])].sort();
}

function withDb<T>(file: string, fn: (db: Database.Database) => T): T {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** SHA-256 of the SubjectPublicKeyInfo, base64 like OpenSSH's: one CA key, whichever certificate carries it. */
function spkiFingerprint(cert: X509Certificate): string {
  const der = cert.publicKey.export({ type: 'spki', format: 'der' });
  return `x509:${createHash('sha256').update(der).digest('base64').replace(/=+$/, '')}`;
}

/** The leaf's issuer: the next certificate of the chain, which must have signed it. */
function x509Signer(chainPem: string, who: string): string {
  const pems = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const [leaf, issuer] = pems.map((p) => new X509Certificate(p));
  if (!leaf || !issuer) throw new Error(`${who}: the stored TLS chain has ${pems.length} certificates`);
  if (!leaf.verify(issuer.publicKey)) throw new Error(`${who}: the stored TLS leaf is not signed by the chain's CA`);
  return spkiFingerprint(issuer);
}

/** `ssh-keygen -L`: "Signing CA: ED25519 SHA256:… (using …)". */
function sshSigner(tmp: string, certText: string): string {
  const file = join(tmp, 'cert.pub');
  writeFileSync(file, `${certText.trim()}\n`);
  const out = execFileSync('ssh-keygen', ['-L', '-f', file], { encoding: 'utf8' });
  const m = /Signing CA: \S+ (SHA256:\S+)/.exec(out);
  if (!m) throw new Error(`ssh-keygen -L shows no signing CA:\n${out}`);
  return `ssh:${m[1]}`;
}

/** `ssh-keygen -l`: "256 SHA256:… comment (ED25519)". */
function sshKeyFingerprint(tmp: string, keyText: string): string {
  const file = join(tmp, 'key.pub');
  writeFileSync(file, `${keyText.trim()}\n`);
  const out = execFileSync('ssh-keygen', ['-l', '-f', file], { encoding: 'utf8' });
  const m = /(SHA256:\S+)/.exec(out);
  if (!m) throw new Error(`ssh-keygen -l shows no fingerprint: ${out}`);
  return `ssh:${m[1]}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
