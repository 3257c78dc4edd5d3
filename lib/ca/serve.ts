/**
 * `infisical-ca serve`: the state directory → the Authority → the HTTPS API and the ops endpoint → READY=1.
 * SIGHUP reloads the API certificate (re-issued by `infisical-ca api-cert`) for new connections; SIGTERM
 * drains in-flight requests within drain_timeout.
 */
import { join } from 'node:path';
import { GatewayError } from '../errors/codes.js';
import type { ConfigOf } from '../runtime/config-schema.js';
import { parseHostPort } from '../runtime/config-schema.js';
import { installSignalHandlers, Lifecycle } from '../runtime/lifecycle.js';
import type { Logger } from '../runtime/log.js';
import { DaemonMetrics } from '../runtime/metrics.js';
import { startOpsServer } from '../runtime/ops.js';
import { logRestartOnly, registerLiveSettings } from '../runtime/reload.js';
import { readSecretFile } from '../runtime/secret-file.js';
import { SystemdNotifier } from '../runtime/systemd.js';
import { prepareStateDirectory, stateDirectory } from '../store/db.js';
import { StateLock } from '../store/lock.js';
import { isPostgresUrl, postgresUrlProblem } from '../store/postgres.js';
import { loadSealingKey, Sealer } from '../store/sealed.js';
import { Authority, VERSION } from './authority.js';
import { type CaConfigSchema, caConfigSchema, unauthenticatedPolicies } from './config.js';
import { startCaServer } from './http.js';
import { tickRotations } from './rotation.js';
import { ROTATION_PHASES } from './store-rotations.js';
import type { RefusalCounter } from './unauthenticated.js';

/** The loaded configuration, typed by the schema that parsed it. */
export type CaConfig = ConfigOf<CaConfigSchema['keys']>;

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.') || host === '::ffff:127.0.0.1';
}

export interface CaState {
  dir: string;
  authority: Authority;
}

/**
 * Where the records are: the `store` key's PostgreSQL URL (or the URL read from the private file it names as
 * file:PATH), else SQLite at `<dir>/ca.db`.
 */
export function storeLocation(config: Pick<CaConfig, 'store'>, dir: string): string {
  const store = config.store;
  if (!store) return join(dir, 'ca.db');
  if (!store.startsWith('file:')) return store;
  const path = store.slice('file:'.length);
  const url = readSecretFile(path, { what: 'store' });
  if (!isPostgresUrl(url)) {
    throw new GatewayError('E_CONFIG_INVALID', `store file:${path} must hold a postgres:// URL`);
  }
  const problem = postgresUrlProblem(url);
  if (problem) throw new GatewayError('E_CONFIG_INVALID', `store file:${path}: ${problem}`);
  return url;
}

/** Opens the state directory (its sealing key, created only when `create`) and the store (storeLocation). */
export function openState(
  config: CaConfig,
  options: { create: boolean; logger?: Logger; refusalCounter?: RefusalCounter },
): CaState {
  const dir = stateDirectory('ca', { override: config.state_directory, env: process.env });
  prepareStateDirectory(dir);
  const key = loadSealingKey({ keyFile: join(dir, 'sealing.key'), create: options.create });
  const authority = Authority.open({
    db: storeLocation(config, dir),
    sealKey: new Sealer(key),
    ...(config.trust_domain !== undefined ? { trustDomain: config.trust_domain } : {}),
    limits: {
      tokenTtlSec: Math.round(config.token_ttl / 1000),
      grantTtlSec: Math.round(config.grant_ttl / 1000),
      supersedeGraceSec: Math.round(config.supersede_grace / 1000),
    },
    rateLimits: unauthenticatedPolicies(config),
    version: VERSION,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.refusalCounter ? { refusalCounter: options.refusalCounter } : {}),
  });
  return { dir, authority };
}

/**
 * Runs the daemon until SIGTERM. `reloadConfig` re-reads flags/env/file on SIGHUP: token and grant lifetimes,
 * the connection caps, the per-source failure limits and the log level apply at once; a new listen address, TLS
 * version or state directory needs a restart (logged).
 */
export async function serve(config: CaConfig, logger: Logger, reloadConfig?: () => CaConfig): Promise<void> {
  const notifier = new SystemdNotifier();
  notifier.status('opening state');
  const metrics = new DaemonMetrics('ca');
  const refusalCounter = metrics.counter(
    `${metrics.prefix}unauthenticated_refusals_total`,
    'Refusals of callers not yet authenticated (failed login, enrollment token, signed request, access token; ' +
      'E_RATE_LIMITED: a source waiting after too many failures), by endpoint and code. Never audited.',
    ['endpoint', 'code'],
  );
  const { dir, authority } = openState(config, { create: false, logger, refusalCounter });
  if (!authority.initialized) {
    throw new GatewayError('E_CONFIG_INVALID', `${dir} holds no initialized CA: run \`infisical-ca init\` first`);
  }
  // One serve per state directory (the admin commands keep working beside it: they take no lock).
  let lock: StateLock;
  try {
    lock = StateLock.acquire(dir, 'infisical-ca serve');
  } catch (err) {
    authority.close();
    throw err;
  }
  const listen = parseHostPort(config.listen)!;
  metrics.gauge(`${metrics.prefix}certificates_issued`, 'Certificates recorded in the database', [], (g) =>
    g.set(authority.store.issuance.certificateCount()),
  );
  metrics.gauge(
    `${metrics.prefix}certificate_expiry_timestamp_seconds`,
    'When the API server certificate ends (re-issue with `infisical-ca api-cert` before)',
    [],
    (g) => g.set(authority.apiServerCredentials().notAfter.getTime() / 1000),
  );
  metrics.gauge(
    `${metrics.prefix}rotation_phase`,
    'Phase of each CA rotation ever started: 0 standby, 1 init, 2 update_clients, 3 update_servers, 4 rollback',
    ['authority'],
    (g) => {
      g.reset();
      for (const r of authority.store.rotations.list())
        g.set({ authority: r.authorityId }, ROTATION_PHASES.indexOf(r.phase));
    },
  );
  const server = await startCaServer({
    authority,
    host: listen.host,
    port: listen.port,
    tls: authority.apiServerCredentials(),
    tlsMinVersion: config.tls_min_version === '1.2' ? '1.2' : '1.3',
    logger,
    metrics,
    maxConnections: config.max_connections,
    maxConnectionsPerSource: config.max_connections_per_source,
  });
  // What SIGHUP applied, read back from the authority and the API server that use it.
  let lifecycle: Lifecycle | undefined;
  registerLiveSettings(
    metrics,
    caConfigSchema,
    () => {
      const limits = authority.ctx.limits;
      const p = authority.unauthenticated.policies;
      const caps = server.connectionLimits;
      return {
        token_ttl: limits.tokenTtlSec * 1000,
        grant_ttl: limits.grantTtlSec * 1000,
        supersede_grace: limits.supersedeGraceSec * 1000,
        max_connections: caps.maxConnections,
        max_connections_per_source: caps.maxConnectionsPerSource,
        login_failure_burst: p.login.burst,
        login_failure_refill: p.login.refillMs,
        login_failure_delay_max: p.login.maxDelayMs,
        enroll_failure_burst: p.enroll.burst,
        enroll_failure_refill: p.enroll.refillMs,
        enroll_failure_delay_max: p.enroll.maxDelayMs,
        signed_failure_burst: p.signed.burst,
        signed_failure_refill: p.signed.refillMs,
        signed_failure_delay_max: p.signed.maxDelayMs,
      };
    },
    { logger, drainTimeoutMs: () => lifecycle?.drainTimeoutMs ?? config.drain_timeout },
  );
  const ops = await startOpsServer({
    listen: config.ops_listen,
    allowNonLoopback: config.ops_allow_remote,
    metrics,
    readiness: () => ({ ready: authority.initialized, reason: 'serving the CA API' }),
  });
  const pruner = setInterval(() => authority.prune(), 10 * 60_000);
  pruner.unref();
  // Held feed reads wake on the authority's change signal; this raises it for commits made by the admin CLI
  // (`infisical-ca revoke` writes the database itself). data_version is one cheap read: looked at every 100 ms,
  // it keeps a revocation made by the CLI within about 0.1 s of the feed. Due certificate retirements
  // (supersede_grace) are swept every second, without waiting for a request.
  let ticks = 0;
  let storeDown = false;
  // A rotation of the API root re-issues the API certificate (rotation.ts), maybe from the admin CLI: served to
  // new connections within a second, as SIGHUP would.
  let servedFingerprint = authority.apiServerCredentials().fingerprint256;
  const watcher = setInterval(() => {
    try {
      authority.noticeExternalChanges();
      if (++ticks % 10 === 0) {
        authority.retireDue();
        authority.unauthenticated.flushLog();
        for (const c of tickRotations(authority.ctx)) {
          logger.info({ authority: c.id, from: c.from, to: c.to }, 'automatic CA rotation moved one phase');
        }
        const api = authority.apiServerCredentials();
        if (api.fingerprint256 !== servedFingerprint) {
          server.setCredentials(api);
          servedFingerprint = api.fingerprint256;
          logger.info(
            { fingerprint: api.rootFingerprint256, certificateFingerprint: api.fingerprint256 },
            'serving a new API certificate',
          );
        }
        if (storeDown) logger.info('the store answers again');
        storeDown = false;
      }
    } catch (err) {
      // A store out of reach (PostgreSQL down) is logged once, not at every tick, and again when it answers.
      const unavailable = err instanceof GatewayError && err.code === 'E_STORE_UNAVAILABLE';
      if (!unavailable) logger.error({ err }, 'change watch or retirement sweep failed');
      else if (!storeDown) logger.error({ reason: err.message }, 'the store cannot be reached; retrying every second');
      storeDown = unavailable;
    }
  }, 100);
  watcher.unref();
  lifecycle = new Lifecycle({
    notifier,
    log: logger,
    drainTimeoutMs: config.drain_timeout,
    hooks: {
      reload: () => {
        // Everything is built before anything is swapped: a bad config or certificate keeps the old state.
        const next = reloadConfig?.() ?? config;
        const credentials = authority.apiServerCredentials();
        server.setCredentials(credentials);
        servedFingerprint = credentials.fingerprint256;
        authority.ctx.limits.tokenTtlSec = Math.round(next.token_ttl / 1000);
        authority.ctx.limits.grantTtlSec = Math.round(next.grant_ttl / 1000);
        authority.ctx.limits.supersedeGraceSec = Math.round(next.supersede_grace / 1000);
        authority.unauthenticated.configure(unauthenticatedPolicies(next));
        server.setConnectionLimits({
          maxConnections: next.max_connections,
          maxConnectionsPerSource: next.max_connections_per_source,
        });
        logger.level = next.log_level;
        if (lifecycle) lifecycle.drainTimeoutMs = next.drain_timeout;
        logRestartOnly(caConfigSchema, config, next, logger);
        logger.info({ fingerprint: credentials.fingerprint256 }, 'reloaded configuration and API certificate');
      },
      drain: async (deadlineMs) => {
        clearInterval(pruner);
        clearInterval(watcher);
        await server.drain(deadlineMs);
        await ops.close();
        authority.close();
        lock.release();
      },
    },
  });
  installSignalHandlers(lifecycle);
  const api = authority.apiServerCredentials();
  logger.info(
    {
      url: server.url,
      ops: ops.url,
      stateDirectory: dir,
      fingerprint: api.rootFingerprint256,
      certificateFingerprint: api.fingerprint256,
      trustDomain: authority.trustDomain,
    },
    'serving',
  );
  if (isLoopback(server.host)) {
    // The default; builds before it listened on every address, so an upgraded CA says why others cannot reach it.
    logger.info(
      { listen: config.listen },
      'the API answers on loopback only: set listen (e.g. 0.0.0.0:8443) for proxies and gateways on other hosts',
    );
  }
  lifecycle.ready(`serving on ${server.url}`);
}
