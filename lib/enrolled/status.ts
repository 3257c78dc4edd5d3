/**
 * `infisical-gateway status` / `infisical-proxy status`: what the state directory says (enrolled as what, the
 * certificates and their expiry, revoked or not) and, when a `serve` runs on it (its pid and ops address are in
 * the lock's holder file, lib/store/lock.ts), what that serve reports on its ops endpoint: /readyz and the
 * standing metrics (feed last success, next renewal, certificate expiry, revoked) and the daemon's own counts.
 * Reads only: it takes no lock and works beside serve. Each daemon passes in its stored part and its counts.
 */
import { X509Certificate } from 'node:crypto';
import { request } from 'node:http';
import { dirname } from 'node:path';
import { parseCertificate } from '../sshcert/index.js';
import { StateLock } from '../store/lock.js';
import type { ComponentRole } from './keys.js';

/** What the daemon reads from its own store. */
export interface StoredStatus {
  uri: string;
  orgId: string | null;
  id: string;
  certificates: { name: string; serial?: string; notAfter: string }[];
  /** The store holds a revocation of this component (seen in the feed, or at a refused renewal). */
  revoked: boolean;
  feedSeq: number;
  /** Daemon-specific facts from the store (the gateway's proxies). */
  extra?: Record<string, unknown>;
}

export interface ServeStatus {
  pid: number;
  since: string;
  ops: string | undefined;
  /** /readyz: 200 = ready; its reason, code and detail. Absent when the ops endpoint did not answer. */
  ready?: boolean;
  reason?: string;
  code?: string;
  detail?: Record<string, unknown>;
  feedLastSuccess?: string | null;
  nextRenewal?: string | null;
  certificateExpiry?: string | null;
  revoked?: boolean;
  counts?: Record<string, number>;
  /** Why the ops endpoint could not be read. */
  error?: string;
}

export interface StatusReport extends StoredStatus {
  role: ComponentRole;
  stateDirectory: string;
  /** Earliest certificate end, from the store. */
  notAfter: string;
  /** null: no serve runs on this state directory. */
  serve: ServeStatus | null;
}

export interface StatusParts {
  role: ComponentRole;
  databasePath: string;
  stored: () => StoredStatus;
  /** Label → metric series after the daemon prefix (tunnels_up), shown when serve runs. */
  counts: Record<string, string>;
  timeoutMs?: number;
}

export async function collectStatus(parts: StatusParts): Promise<StatusReport> {
  const dir = dirname(parts.databasePath);
  const stored = parts.stored();
  const notAfter = stored.certificates.map((c) => c.notAfter).sort()[0] ?? '';
  const holder = StateLock.holder(dir);
  const serving = holder?.command === `infisical-${parts.role} serve` ? holder : undefined;
  const report: StatusReport = { role: parts.role, stateDirectory: dir, ...stored, notAfter, serve: null };
  if (!serving) return report;
  const serve: ServeStatus = { pid: serving.pid, since: serving.since, ops: serving.ops };
  report.serve = serve;
  if (!serving.ops) return report;
  try {
    const timeoutMs = parts.timeoutMs ?? 3000;
    const [readyz, metrics] = await Promise.all([
      get(`${serving.ops}/readyz`, timeoutMs),
      get(`${serving.ops}/metrics`, timeoutMs),
    ]);
    const r = JSON.parse(readyz.body) as { reason?: string; code?: string; detail?: Record<string, unknown> };
    serve.ready = readyz.status === 200;
    if (r.reason !== undefined) serve.reason = r.reason;
    if (r.code !== undefined) serve.code = r.code;
    if (r.detail !== undefined) serve.detail = r.detail;
    const p = `infisical_${parts.role}_`;
    const time = (name: string) => {
      const v = metric(metrics.body, p + name);
      return v === undefined || v === 0 ? null : new Date(v * 1000).toISOString();
    };
    serve.feedLastSuccess = time('feed_last_success_timestamp_seconds');
    serve.nextRenewal = time('next_renewal_timestamp_seconds');
    serve.certificateExpiry = time('certificate_expiry_timestamp_seconds');
    serve.revoked = metric(metrics.body, `${p}revoked`) === 1;
    serve.counts = {};
    for (const [label, series] of Object.entries(parts.counts)) {
      const v = metric(metrics.body, p + series);
      if (v !== undefined) serve.counts[label] = v;
    }
  } catch (err) {
    serve.error = (err as Error).message;
  }
  return report;
}

/** A stored X.509 chain's leaf as the report lists it. */
export function x509Entry(name: string, chainPem: string): StoredStatus['certificates'][number] {
  const leaf = new X509Certificate(chainPem);
  return { name, serial: leaf.serialNumber.toLowerCase(), notAfter: new Date(leaf.validTo).toISOString() };
}

/** A stored OpenSSH certificate line as the report lists it (unparseable: its name and "?"). */
export function sshEntry(name: string, line: string): StoredStatus['certificates'][number] {
  const cert = parseCertificate(line);
  if (!cert.ok) return { name, notAfter: '?' };
  return {
    name,
    serial: String(cert.value.serial),
    notAfter: new Date(Number(cert.value.validBefore) * 1000).toISOString(),
  };
}

/** The report for a terminal. */
export function statusText(r: StatusReport): string {
  const lines = [
    `${r.role} ${r.uri}`,
    `  org ${r.orgId ?? '(instance)'}, id ${r.id}, state directory ${r.stateDirectory}`,
    `  revoked: ${r.revoked || r.serve?.revoked ? 'YES: enroll again' : 'no'}`,
    ...r.certificates.map((c) => `  certificate ${c.name}${c.serial ? ` serial ${c.serial}` : ''} until ${c.notAfter}`),
    `  feed position ${r.feedSeq}`,
  ];
  for (const [k, v] of Object.entries(r.extra ?? {})) lines.push(`  ${k}: ${Array.isArray(v) ? v.join(', ') : v}`);
  const s = r.serve;
  if (!s) {
    lines.push('serve: not running');
    return lines.join('\n');
  }
  lines.push(`serve: running, pid ${s.pid} since ${s.since}${s.ops ? `, ops ${s.ops}` : ''}`);
  if (s.error) lines.push(`  ops endpoint unreadable: ${s.error}`);
  if (s.ready !== undefined) lines.push(`  ready: ${s.ready ? 'yes' : `no (${s.code ?? ''} ${s.reason ?? ''})`}`);
  if (s.reason && s.ready) lines.push(`  ${s.reason}`);
  for (const [k, v] of Object.entries(s.counts ?? {})) lines.push(`  ${k}: ${v}`);
  const proxies = s.detail?.['proxies'];
  if (Array.isArray(proxies)) {
    for (const p of proxies as { proxyId: string; state: string }[]) lines.push(`  proxy ${p.proxyId}: ${p.state}`);
  }
  if (s.feedLastSuccess !== undefined) lines.push(`  feed last read ${s.feedLastSuccess ?? 'never'}`);
  if (s.nextRenewal !== undefined) lines.push(`  next renewal ${s.nextRenewal ?? 'none planned'}`);
  if (s.certificateExpiry !== undefined) lines.push(`  certificate expiry ${s.certificateExpiry ?? '-'}`);
  return lines.join('\n');
}

/** One sample of a Prometheus text exposition (the sum over label sets), undefined when absent. */
function metric(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m?.[1] === name) sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: timeoutMs }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error(`${url} did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
