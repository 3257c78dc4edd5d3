/**
 * The admin subcommands of `infisical-ca`. They operate on the local state directory directly (as root on the CA
 * host, with the sealing key), acting as the instance admin: no credential to store, and safe next to a
 * running `serve` because both go through SQLite transactions (WAL, busy timeout) and the server caches nothing
 * that these commands change (orgs, tokens, policies and revocations are read from the database per request).
 *
 * Each command returns what it did as data; the entry point prints it as text or, with --json, as JSON.
 */
import { isIP } from 'node:net';
import { join } from 'node:path';
import { type ErrorCode, GatewayError, unwrap } from '../errors/codes.js';
import type { GrantMode } from '../pki/grant.js';
import { ID_RULE, isValidId } from '../pki/identity.js';
import type { ComponentStatus, ProxyScope, RevocationKind } from '../protocol/api.js';
import { parseDuration } from '../runtime/config-schema.js';
import { stateDirectory } from '../store/db.js';
import { isPostgresUrl } from '../store/postgres.js';
import type { Authority } from './authority.js';
import { migrateStore } from './migrate-store.js';
import { advance, type RotationAction, type RotationScope, rotationStatus } from './rotation.js';
import type { CaConfig } from './serve.js';
import { openState, storeLocation } from './serve.js';

export interface Output {
  json: unknown;
  text: string;
}

const out = (json: unknown, text: string): Output => ({ json, text });

/** What --help says about exit statuses; cliExitStatus implements it. */
export const EXIT_STATUS_HELP =
  'Exit status: 0 ok; 1 error (its code is printed); 2 bad input: an invalid id or value, a missing --yes, ' +
  'unknown flags (E_REQUEST_INVALID); 78 invalid configuration (E_CONFIG_INVALID), or a secret file others may read ' +
  '(E_SECRET_FILE_MODE).';

export const EXIT_BAD_INPUT = 2;

export function cliExitStatus(code: ErrorCode): number {
  if (code === 'E_REQUEST_INVALID') return EXIT_BAD_INPUT;
  if (code === 'E_CONFIG_INVALID' || code === 'E_SECRET_FILE_MODE') return 78;
  return 1;
}

/**
 * Refuses, before the state directory is opened, an id the CA cannot store or put in an identity URI (the
 * database would refuse it deep inside, as an internal error). `null`/`undefined` values are absent options.
 */
export function requireIds(ids: Record<string, string | null | undefined>): void {
  for (const [what, value] of Object.entries(ids)) {
    if (value === undefined || value === null || isValidId(value)) continue;
    throw new GatewayError('E_REQUEST_INVALID', `${what} ${JSON.stringify(value)} is not a valid id (${ID_RULE})`);
  }
}

/** Asks the operator a yes/no question; undefined when there is nobody to ask (stdin is not a terminal). */
export type Ask = ((question: string) => Promise<boolean>) | undefined;

function apiNames(names: readonly string[]): { dnsNames: string[]; ipAddresses: string[] } {
  return { dnsNames: names.filter((n) => isIP(n) === 0), ipAddresses: names.filter((n) => isIP(n) !== 0) };
}

/** Creates the state directory, sealing key, instance CAs, admin credential and API server certificate. */
export async function initCommand(config: CaConfig): Promise<Output> {
  const { dir, authority } = openState(config, { create: true });
  try {
    const init = unwrap(await authority.init());
    const api = authority.issueApiServerCertificate(apiNames(config.api_names));
    const json = {
      stateDirectory: dir,
      trustDomain: init.trustDomain,
      adminClientId: init.adminClientId,
      adminClientSecret: init.adminClientSecret,
      apiFingerprint: api.rootFingerprint256,
      apiCertificateFingerprint: api.fingerprint256,
      apiNames: config.api_names,
      apiNotAfter: api.notAfter.toISOString(),
    };
    const text = [
      `initialized the CA in ${dir} (trust domain ${init.trustDomain})`,
      '',
      'admin credential (shown once; store it now):',
      `  client id:     ${init.adminClientId}`,
      `  client secret: ${init.adminClientSecret}`,
      '',
      `API server certificate for ${config.api_names.join(', ')} (until ${json.apiNotAfter}), from the API root`,
      `  API root SHA-256 fingerprint (pin this; it survives api-cert): ${api.rootFingerprint256}`,
    ].join('\n');
    return out(json, text);
  } finally {
    authority.close();
  }
}

/** Re-issues the API server certificate (new names or expiry); `serve` picks it up on SIGHUP. */
export function apiCertCommand(config: CaConfig): Output {
  return withAuthority(config, (ca) => {
    const api = ca.issueApiServerCertificate(apiNames(config.api_names));
    return out(
      {
        apiFingerprint: api.rootFingerprint256,
        apiCertificateFingerprint: api.fingerprint256,
        apiNames: config.api_names,
        apiNotAfter: api.notAfter.toISOString(),
      },
      `new API server certificate ${api.fingerprint256}, from the same API root: clients pinning the root ` +
        `(${api.rootFingerprint256}) keep working; SIGHUP serve to use it`,
    );
  });
}

export function withAuthority<T>(config: CaConfig, fn: (ca: Authority) => T): T {
  const { authority } = openState(config, { create: false });
  try {
    if (!authority.initialized)
      throw new Error('this state directory holds no initialized CA; run `infisical-ca init`');
    return fn(authority);
  } finally {
    authority.close();
  }
}

export async function withAuthorityAsync<T>(config: CaConfig, fn: (ca: Authority) => Promise<T>): Promise<T> {
  const { authority } = openState(config, { create: false });
  try {
    if (!authority.initialized)
      throw new Error('this state directory holds no initialized CA; run `infisical-ca init`');
    return await fn(authority);
  } finally {
    authority.close();
  }
}

export const orgCommands = {
  create: (config: CaConfig, orgId: string) => {
    requireIds({ 'org id': orgId });
    return withAuthority(config, (ca) => {
      const org = unwrap(ca.createOrg(ca.localAdmin(), orgId));
      return out(org, `created org ${orgId} and its six certificate authorities`);
    });
  },
  list: (config: CaConfig) =>
    withAuthority(config, (ca) => {
      const { orgs } = unwrap(ca.listOrgs(ca.localAdmin()));
      return out(orgs, orgs.map((o) => `${o.orgId}\t${o.createdAt}`).join('\n') || '(no orgs)');
    }),
  /** Cannot be undone: needs `yes`, or a "y" from the operator when there is a terminal to ask. */
  delete: async (config: CaConfig, orgId: string, confirm: { yes: boolean; ask: Ask }) => {
    requireIds({ 'org id': orgId });
    if (!confirm.yes) {
      const what = `delete org ${orgId}: revoke its gateways, proxies and identities and destroy its CA keys`;
      if (!confirm.ask) {
        throw new GatewayError(
          'E_REQUEST_INVALID',
          `${what} cannot be undone: pass --yes to confirm (stdin is not a terminal to ask)`,
        );
      }
      if (!(await confirm.ask(`${what}? This cannot be undone. [y/N] `))) {
        throw new GatewayError('E_REQUEST_INVALID', `not confirmed: org ${orgId} was not deleted`);
      }
    }
    return withAuthority(config, (ca) => {
      const r = unwrap(ca.deleteOrg(ca.localAdmin(), orgId));
      return out(r, `deleted org ${orgId}: ${r.revoked} revocations published, its CA keys destroyed`);
    });
  },
};

export const identityCommands = {
  create: (config: CaConfig, orgId: string, identityId: string, role: 'member' | 'org-admin', groups: string[]) => {
    requireIds({ 'org id': orgId, 'identity id': identityId });
    for (const group of groups) requireIds({ 'group name': group });
    return withAuthorityAsync(config, async (ca) => {
      const r = unwrap(await ca.createIdentity(ca.localAdmin(), orgId, { identityId, role, groups }));
      const text = [
        `created ${role} ${identityId} in org ${orgId} (shown once; store it now):`,
        `  client id:     ${r.clientId}`,
        `  client secret: ${r.clientSecret}`,
      ].join('\n');
      return out(r, text);
    });
  },
  list: (config: CaConfig, orgId: string) => {
    requireIds({ 'org id': orgId });
    return withAuthority(config, (ca) => {
      const rows = ca.store.orgs.listIdentities(orgId).map((i) => ({
        identityId: i.identityId,
        role: i.role,
        groups: i.groups,
        clientId: i.clientId,
        revoked: i.revokedAt !== null,
      }));
      const text = rows.map((i) => `${i.identityId}\t${i.role}\t${i.groups.join(',')}\t${i.revoked ? 'revoked' : ''}`);
      return out(rows, text.join('\n') || '(no identities)');
    });
  },
};

export function tokenCommand(
  config: CaConfig,
  orgId: string | null,
  kind: 'gateway' | 'proxy',
  subjectId: string,
  ttlSeconds?: number,
): Output {
  requireIds({ 'org id': orgId, [`${kind} id`]: subjectId });
  return withAuthority(config, (ca) => {
    const t = unwrap(
      ca.createEnrollmentToken(ca.localAdmin(), orgId, { kind, subjectId, ...(ttlSeconds ? { ttlSeconds } : {}) }),
    );
    const scope = orgId === null ? 'instance' : `org ${orgId}`;
    return out(
      t,
      `one-time enrollment token for ${kind} ${subjectId} (${scope}), valid until ${t.expiresAt}:\n${t.token}`,
    );
  });
}

export const listCommands = {
  proxies: (config: CaConfig) =>
    withAuthority(config, (ca) => {
      const now = Date.now();
      const proxies = unwrap(ca.listProxies(ca.localAdmin())).proxies.map((p) => ({ ...p, online: online(p, now) }));
      const rows = proxies.map((p) => [
        p.proxyId,
        p.scope === 'instance' ? 'instance' : `org:${p.orgId}`,
        ...statusColumns(p, now),
        p.hostnames.join(','),
      ]);
      return out(proxies, table(['ID', 'SCOPE', ...STATUS_HEADER, 'HOSTNAMES'], rows) || '(no proxies)');
    }),
  gateways: (config: CaConfig, orgId: string) => {
    requireIds({ 'org id': orgId });
    return withAuthority(config, (ca) => {
      const now = Date.now();
      const gateways = unwrap(ca.listGateways(ca.localAdmin(), orgId)).gateways.map((g) => ({
        ...g,
        online: online(g, now),
      }));
      const rows = gateways.map((g) => [g.gatewayId, g.orgId, ...statusColumns(g, now)]);
      // Then one line per replica (enrolled with --replica), under a header of its own.
      const replicas = gateways.flatMap((g) =>
        (g.replicas ?? []).map((r) => [
          g.gatewayId,
          r.replica,
          r.currentSerial ?? '-',
          r.notAfter ?? '-',
          online(r, now) ? 'yes' : 'no',
          r.lastSeenAt ?? '-',
          r.version ?? '-',
        ]),
      );
      const replicaTable = table(
        ['GATEWAY', 'REPLICA', 'SERIAL', 'NOT_AFTER', 'ONLINE', 'LAST_SEEN', 'VERSION'],
        replicas,
      );
      const text = table(['ID', 'ORG', ...STATUS_HEADER], rows) || '(no gateways)';
      return out(gateways, replicaTable ? `${text}\n\n${replicaTable}` : text);
    });
  },
  grants: (config: CaConfig, orgId: string, limit: number) => {
    requireIds({ 'org id': orgId });
    return withAuthority(config, (ca) => {
      const rows = ca.store.issuance.listGrants(orgId, limit);
      const text = rows.map(
        (g) =>
          `${g.grantId}\t${g.identityId} → ${g.gatewayId} ${g.targetJson} ${g.mode}\tuntil ${new Date(g.expiresAt).toISOString()}`,
      );
      return out(rows, text.join('\n') || '(no grants)');
    });
  },
};

const STATUS_HEADER = ['SERIAL', 'NOT_AFTER', 'REVOKED', 'ENROLLED', 'RENEWED', 'ONLINE', 'LAST_SEEN', 'VERSION'];

/**
 * Online: read the feed within this long. A running gateway or proxy reads it at least every FEED_MAX_WAIT_SEC
 * (a held read) and the CA writes "last seen" at most once a minute (store-seen.ts), so 3 minutes of silence
 * means it is not reading.
 */
export const ONLINE_WITHIN_MS = 3 * 60_000;

function online(c: ComponentStatus, now: number): boolean {
  return c.lastSeenAt !== null && now - Date.parse(c.lastSeenAt) <= ONLINE_WITHIN_MS;
}

function statusColumns(c: ComponentStatus & { revoked: boolean }, now: number): string[] {
  return [
    c.currentSerial ?? '-',
    c.notAfter ?? '-',
    c.revoked ? 'yes' : 'no',
    c.enrolledAt,
    c.renewedAt ?? '-',
    online(c, now) ? 'yes' : 'no',
    c.lastSeenAt ?? '-',
    c.version ?? '-',
  ];
}

/** Tab-separated rows under a header row; '' when there are none. */
function table(header: string[], rows: string[][]): string {
  return rows.length === 0 ? '' : [header, ...rows].map((r) => r.join('\t')).join('\n');
}

export const policyCommands = {
  add: (
    config: CaConfig,
    orgId: string,
    rule: { id?: string; subject: string; gateways: string[]; targets: string[]; modes: GrantMode[] },
  ) => {
    const [subjectKind, subjectId] = splitSubject(rule.subject);
    requireIds({ 'org id': orgId, 'rule id': rule.id, [`${subjectKind} id`]: subjectId });
    for (const g of rule.gateways) if (g !== '*') requireIds({ 'gateway id': g });
    return withAuthority(config, (ca) => {
      // A rule for an identity that does not exist would allow nothing, silently (a typo): refuse it.
      if (subjectKind === 'identity' && subjectId !== undefined && !ca.store.orgs.identity(orgId, subjectId)) {
        throw new GatewayError(
          'E_NOT_FOUND',
          `no identity ${subjectId} in org ${orgId} (create it first: infisical-ca identity create ${orgId} ${subjectId})`,
        );
      }
      const r = unwrap(ca.addPolicy(ca.localAdmin(), orgId, rule));
      return out(
        r,
        `added rule ${r.id}: ${r.subject} may reach ${r.targets.join(', ')} through ${r.gateways.join(', ')} (${r.modes.join(', ')})`,
      );
    });
  },
  list: (config: CaConfig, orgId: string) => {
    requireIds({ 'org id': orgId });
    return withAuthority(config, (ca) => {
      const { rules } = unwrap(ca.listPolicies(ca.localAdmin(), orgId));
      const text = rules.map(
        (r) => `${r.id}\t${r.subject}\t${r.gateways.join(',')}\t${r.targets.join(',')}\t${r.modes.join(',')}`,
      );
      return out(rules, text.join('\n') || '(no rules: every grant is denied)');
    });
  },
  delete: (config: CaConfig, orgId: string, ruleId: string) => {
    requireIds({ 'org id': orgId, 'rule id': ruleId });
    return withAuthority(config, (ca) =>
      out(unwrap(ca.deletePolicy(ca.localAdmin(), orgId, ruleId)), `deleted rule ${ruleId}`),
    );
  },
};

/** "identity:boss" → ['identity', 'boss']; anything else is left to the policy's own check (E_REQUEST_INVALID). */
function splitSubject(subject: string): ['identity' | 'group', string | undefined] {
  const at = subject.indexOf(':');
  const kind = subject.slice(0, at);
  return kind === 'identity' || kind === 'group' ? [kind, subject.slice(at + 1)] : ['identity', undefined];
}

export function revokeCommand(
  config: CaConfig,
  kind: RevocationKind,
  subject: string,
  orgId: string | undefined,
  reason: string | undefined,
): Output {
  // Grant ids and certificate serials follow the id rule too (random hex with a prefix, hex).
  requireIds({ [kind === 'certificate' ? 'certificate serial' : `${kind} id`]: subject, 'org id': orgId });
  return withAuthority(config, (ca) => {
    const r = unwrap(
      ca.revoke(ca.localAdmin(), { kind, subject, ...(orgId ? { orgId } : {}), ...(reason ? { reason } : {}) }),
    );
    return out(r, `revoked ${kind} ${subject}${orgId ? ` of org ${orgId}` : ''} (feed seq ${r.seq})`);
  });
}

/** `rotate start|next|rollback|status`: one CA's phased rotation (rotation.ts), instance-wide or for one org. */
export function rotateCommand(
  config: CaConfig,
  action: RotationAction | 'status',
  o: { instance: boolean; org: string | undefined; authority: string | undefined; grace: string | undefined },
): Output {
  if (o.instance === (o.org !== undefined)) {
    throw new GatewayError('E_REQUEST_INVALID', 'name the scope: --instance or --org ORG (one of them)');
  }
  requireIds({ 'org id': o.org });
  const scope: RotationScope = o.org !== undefined ? { orgId: o.org } : { instance: true };
  let graceMs: number | null = null;
  if (o.grace !== undefined) {
    if (action !== 'start') throw new GatewayError('E_REQUEST_INVALID', '--grace is given to rotate start');
    const parsed = parseDuration(o.grace);
    if (parsed === undefined || parsed < 1000) {
      throw new GatewayError(
        'E_REQUEST_INVALID',
        `--grace ${JSON.stringify(o.grace)}: expected a duration of 1s or more`,
      );
    }
    graceMs = parsed;
  }
  return withAuthority(config, (ca) => {
    if (action === 'status') {
      const rows = rotationStatus(ca.ctx, scope, o.authority);
      const text = rows.map(
        (r) =>
          `${r.authority}\t${r.phase}${r.automatic ? ` (automatic, grace ${r.automatic.graceMs / 1000} s)` : ''}` +
          `\tsigner ${r.signer}${r.pending.length ? `\tpending: ${r.pending.join(', ')}` : ''}` +
          `${r.offline.length ? `\toffline: ${r.offline.join(', ')}` : ''}` +
          `${r.phase !== 'standby' && r.waitingFor.length === 0 ? '\tready for next' : ''}`,
      );
      return out(rows, text.join('\n'));
    }
    if (o.authority === undefined)
      throw new GatewayError('E_REQUEST_INVALID', `rotate ${action} needs --authority NAME`);
    const c = advance(ca.ctx, scope, o.authority, action, { actor: 'local-admin', graceMs });
    const notes = [
      c.status.offline.length
        ? `offline (not waited for; they must re-enroll after standby): ${c.status.offline.join(', ')}`
        : '',
      c.to === 'standby' ? `only ${c.status.signer} is trusted now` : '',
    ].filter(Boolean);
    return out(c, [`${c.id}: ${c.from} → ${c.to}`, ...notes].join('\n'));
  });
}

export function auditCommand(config: CaConfig, since: number): Output {
  return withAuthority(config, (ca) => {
    const r = unwrap(ca.audit(ca.localAdmin(), since));
    const text = r.entries.map(
      (e) =>
        `${e.seq}\t${e.at}\t${e.outcome}\t${e.action}\t${e.actor}\t${e.subject}${e.code ? `\t${e.code}` : ''}${e.reason ? `\t${e.reason}` : ''}`,
    );
    return out(r, text.join('\n') || '(no audit entries)');
  });
}

/**
 * `migrate --from sqlite:PATH --to postgres://…|file:PATH`: the one-shot move to PostgreSQL (migrate-store.ts).
 * Without --from, the state directory's ca.db.
 */
export function migrateCommand(config: CaConfig, from: string | undefined, to: string): Output {
  let sourcePath: string;
  if (from === undefined) {
    sourcePath = join(stateDirectory('ca', { override: config.state_directory, env: process.env }), 'ca.db');
  } else if (from.startsWith('sqlite:') && from.length > 'sqlite:'.length) {
    sourcePath = from.slice('sqlite:'.length);
  } else {
    throw new GatewayError('E_REQUEST_INVALID', `--from ${JSON.stringify(from)}: expected sqlite:PATH`);
  }
  if (!isPostgresUrl(to) && !/^file:./.test(to)) {
    throw new GatewayError('E_REQUEST_INVALID', `--to: expected a postgres:// URL or file:PATH holding one`);
  }
  const m = migrateStore(sourcePath, storeLocation({ store: to }, ''));
  const width = Math.max(...m.tables.map((t) => t.table.length));
  const text = [
    `copied the CA (schema version ${m.schemaVersion}) from ${m.from} to ${m.to} in one transaction; rows, verified:`,
    ...m.tables.map((t) => `  ${t.table.padEnd(width)}  ${t.rows}`),
    `sequences continue at: ${m.sequences.map((s) => `${s.table}.${s.column} ${s.next}`).join(', ')}`,
    '',
    `next: set store to ${to.startsWith('file:') ? to : 'that URL'} in /etc/infisical/ca.conf (or --store), copy ` +
      'the state directory (its sealing.key) to each replica, start serve; keep the SQLite file as the backup of this moment',
  ].join('\n');
  return out(m, text);
}

export type { ProxyScope };
