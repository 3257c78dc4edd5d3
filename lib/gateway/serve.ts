/**
 * `infisical-gateway enroll` and `serve`: config → state database → Gateway → ops endpoint → systemd.
 * READY=1 once the first tunnel is up; STATUS= "tunnels up/total"; SIGHUP re-reads config and certificates
 * from SQLite without dropping streams; SIGTERM drains (bounded by drain_timeout).
 */
import { readFileSync } from 'node:fs';
import { enrollAndSave, enrolledDatabasePath, openForServe, renewAndStatus } from '../enrolled/commands-of.js';
import { enrollmentCredential } from '../enrolled/credentials.js';
import { enrolledReadiness, registerStandingMetrics } from '../enrolled/health.js';
import type { RenewResult } from '../enrolled/renew.js';
import { type StatusReport, sshEntry, x509Entry } from '../enrolled/status.js';
import { watchGeneration } from '../enrolled/store.js';
import { GatewayError } from '../errors/codes.js';
import type { ConfigOf } from '../runtime/config-schema.js';
import { installSignalHandlers, Lifecycle } from '../runtime/lifecycle.js';
import { type Audit, createAudit, type Logger } from '../runtime/log.js';
import { DaemonMetrics } from '../runtime/metrics.js';
import { startOpsServer } from '../runtime/ops.js';
import { logRestartOnly, registerLiveSettings } from '../runtime/reload.js';
import { sampledWarn } from '../runtime/sampled-log.js';
import { type GatewayConfigSchema, gatewayConfigSchema } from './config.js';
import { enroll, renew, replicaOf } from './enroll.js';
import { certWindows, Gateway, type GatewaySettings } from './gateway.js';
import { GatewayStore } from './state.js';

export const GATEWAY_VERSION = '0.1.0';

/** The loaded configuration, typed by the schema that parsed it. */
export type GatewayConfig = ConfigOf<GatewayConfigSchema['keys']>;

export function databasePath(config: GatewayConfig, env: NodeJS.ProcessEnv = process.env): string {
  return enrolledDatabasePath('gateway', config.state_directory, env);
}

/** The reloadable settings a config gives the Gateway. */
export function settingsFrom(config: GatewayConfig): GatewaySettings {
  let upstreamTls: GatewaySettings['upstreamTls'];
  if (config.http_upstream_tls) {
    upstreamTls = config.http_upstream_ca ? { ca: readFileSync(config.http_upstream_ca, 'utf8') } : {};
  }
  return {
    allowlist: {
      cidrs: config.allow_cidrs,
      hosts: config.allow_hosts,
      ports: config.allow_ports,
      targets: config.targets,
    },
    ...(upstreamTls ? { upstreamTls } : {}),
    keepaliveIntervalMs: config.keepalive_interval,
    keepaliveCountMax: config.keepalive_count_max,
    backoff: {
      baseMs: config.reconnect_base,
      capMs: Math.max(config.reconnect_cap, config.reconnect_base),
      factor: 2,
      stableMs: 10_000,
    },
    maxStreams: config.max_streams,
    handshakeTimeoutMs: config.handshake_timeout,
    holdInnerSessions: config.hold_inner_sessions,
    maxPendingChannels: config.max_pending_channels,
    maxHeldSessions: config.max_held_sessions,
    limits: { connectTimeoutMs: config.connect_timeout },
    revocationPollMs: config.revocation_poll,
    feedWaitSec: Math.round(config.feed_wait / 1000),
    feedStaleAfterMs: config.feed_stale_after,
    renew: config.renew,
  };
}

function required(config: GatewayConfig, key: keyof GatewayConfig, flag: string): string {
  const v = config[key];
  if (typeof v !== 'string' || v === '') {
    throw new GatewayError('E_CONFIG_INVALID', `enroll needs ${flag} (config key ${String(key)})`);
  }
  return v;
}

/** Enrolls with the CA and stores the result; returns a summary for the operator. */
export async function enrollCommand(config: GatewayConfig): Promise<Record<string, unknown>> {
  const caUrl = required(config, 'ca_url', '--ca');
  const caFingerprint = required(config, 'ca_fingerprint', '--ca-fingerprint');
  const orgId = required(config, 'org_id', '--org');
  const gatewayId = required(config, 'gateway_id', '--gateway-id');
  // Read (and a loose secret file refused) before the state directory is touched.
  const credential = enrollmentCredential(config, { clientId: config.client_id, clientIdFlag: '--client-id' });
  const path = databasePath(config);
  const state = await enrollAndSave({
    role: 'gateway',
    path,
    caUrl,
    caFingerprint,
    credential,
    enroll: (client, enrollmentToken) =>
      enroll({
        client,
        caUrl,
        caFingerprint,
        orgId,
        gatewayId,
        ...(config.replica ? { replica: config.replica } : {}),
        ...(enrollmentToken ? { enrollmentToken } : {}),
      }),
    open: (p) => GatewayStore.open(p),
  });
  return {
    gatewayUri: state.gatewayUri,
    ...(config.replica ? { replica: config.replica } : {}),
    database: path,
    proxies: state.proxies.map((p) => `${p.proxyId} (${p.scope}) ${p.sshAddress}`),
    notAfter: state.notAfter,
  };
}

const commands = renewAndStatus({
  role: 'gateway',
  open: (p) => GatewayStore.open(p),
  renew,
  stored: (store) => {
    const s = store.load();
    return {
      uri: s.gatewayUri,
      orgId: s.orgId,
      id: s.gatewayId,
      certificates: [
        x509Entry('tls', s.tlsChainPem),
        ...s.sshCertificates.map((c) => sshEntry(`ssh ${c.scope}`, c.certificate)),
      ],
      revoked: store
        .revocations()
        .some((r) => r.kind === 'gateway' && r.subject === s.gatewayId && (r.orgId ?? s.orgId) === s.orgId),
      feedSeq: store.feedSeq(),
      extra: {
        ...(replicaOf(s) ? { replica: replicaOf(s) } : {}),
        proxies: s.proxies.map((p) => `${p.proxyId} (${p.scope}) ${p.sshAddress}`),
      },
    };
  },
  counts: { 'tunnels up': 'tunnels_up', 'tunnels total': 'tunnels_total', 'streams open': 'streams_active' },
});

/** Renews the stored certificates now (also beside a running serve, which picks them up). */
export const renewCommand = (config: GatewayConfig): Promise<RenewResult> => commands.renew(databasePath(config));

/** What the state directory and a running serve say (reads only, beside serve). */
export const statusCommand = (config: GatewayConfig): Promise<StatusReport> => commands.status(databasePath(config));

export interface ServeHandle {
  gateway: Gateway;
  opsUrl: string;
  lifecycle: Lifecycle;
}

/** Runs the gateway until SIGTERM. `reloadConfig` re-reads flags/env/file (SIGHUP). */
export async function serve(
  config: GatewayConfig,
  logger: Logger,
  reloadConfig: () => GatewayConfig,
): Promise<ServeHandle> {
  const { notifier, lock, store } = openForServe('gateway', databasePath(config), (p) => GatewayStore.open(p));
  const state = store.load();
  const audit: Audit = createAudit(logger, { sink: (r) => store.appendAudit(r) });
  const metrics = new DaemonMetrics('gateway');
  const p = metrics.prefix;
  const streams = metrics.counter(`${p}streams_total`, 'Streams carried, by outcome', ['outcome', 'mode']);
  const refusals = metrics.counter(`${p}refusals_total`, 'Streams refused, by code', ['code']);
  const bytes = metrics.counter(`${p}stream_bytes_total`, 'Bytes carried, by direction', ['direction']);
  const limitRefusals = metrics.counter(
    `${p}limit_refusals_total`,
    'Channel opens refused (and sessions not held) by an abuse limit, by limit (its config key) and proxy',
    ['limit', 'proxy'],
  );
  // A flood of channel opens must not become a flood of log lines (nor of audit rows: nobody authenticated).
  const warnSampled = sampledWarn(logger, 10_000);
  const ca = store.serveCaClient(state, config, `infisical-gateway/${GATEWAY_VERSION}`, logger);

  let lifecycle: Lifecycle | undefined;
  const gateway: Gateway = new Gateway(state, settingsFrom(config), {
    audit,
    log: logger,
    store,
    ca,
    version: GATEWAY_VERSION,
    onTunnels: (s) => {
      if (gateway?.revokedSelf) return;
      const status = `tunnels up ${s.up}/${s.total}, streams ${gateway?.registry.size ?? 0}`;
      if (s.up > 0 && lifecycle?.state === 'starting') lifecycle.ready(status);
      else notifier.status(status);
    },
    onStreamEnd: (r) => {
      streams.inc({ outcome: r.outcome, mode: r.mode });
      bytes.inc({ direction: 'in' }, r.bytesIn);
      bytes.inc({ direction: 'out' }, r.bytesOut);
    },
    onRefused: (r) => refusals.inc({ code: r.code }),
    onChannelRefused: (r) => {
      limitRefusals.inc({ limit: r.limit, proxy: r.proxyId });
      warnSampled(
        `${r.limit}:${r.proxyId}`,
        { code: r.code, limit: r.limit, proxyId: r.proxyId, reason: r.reason },
        r.limit === 'max_held_sessions' ? 'session not held: at a limit' : 'channel refused by a limit',
      );
    },
    onRevokedSelf: (reason) => notifier.status(`REVOKED: ${reason}; every tunnel closed; enroll again`),
  });
  metrics.gauge(`${p}tunnels_up`, 'Tunnels up', [], (g) => g.set(gateway.pool.status().up));
  metrics.gauge(`${p}tunnels_total`, 'Proxies assigned', [], (g) => g.set(gateway.pool.status().total));
  metrics.gauge(`${p}streams_active`, 'Streams open now', [], (g) => g.set(gateway.registry.size));
  metrics.gauge(`${p}channels_pending`, 'Channels waiting for their inner TLS handshake now', [], (g) =>
    g.set(gateway.inner.pendingChannels),
  );
  metrics.gauge(
    `${p}sessions_held`,
    'Inner sessions held for their go (tcp+go, ping+go) now, with the handshakes that picked one and are still under way',
    [],
    (g) => g.set(gateway.inner.heldSessions),
  );
  const standing = {
    revoked: () => gateway.revokedReason,
    feed: () => gateway.feedHealth(),
  };
  registerStandingMetrics(metrics, standing, {
    notAfterMs: () => Math.min(...certWindows(gateway.state).map((w) => w.notAfter.getTime())),
    nextRenewalMs: () => gateway.renewal.nextAt,
  });

  // What SIGHUP applied, read back from the parts that use it (the last applied config only for the CA pin,
  // which is added to the client's pins, and the upstream CA file, which the inner server holds as its content).
  let applied = config;
  registerLiveSettings(
    metrics,
    gatewayConfigSchema,
    () => {
      const { allowlist, upstreamTls, feedWaitSec, feedStaleAfterMs } = gateway.settings;
      const tunnels = gateway.pool.settings;
      const inner = gateway.inner.settings;
      const feed = gateway.feed?.timing;
      return {
        ca_fingerprint: applied.ca_fingerprint,
        allow_cidrs: allowlist.cidrs,
        allow_hosts: allowlist.hosts ?? [],
        allow_ports: allowlist.ports,
        targets: allowlist.targets ?? [],
        http_upstream_tls: upstreamTls !== undefined,
        http_upstream_ca: applied.http_upstream_ca,
        keepalive_interval: tunnels.keepaliveIntervalMs,
        keepalive_count_max: tunnels.keepaliveCountMax,
        reconnect_base: tunnels.backoff.baseMs,
        reconnect_cap: tunnels.backoff.capMs,
        max_streams: gateway.registry.maxStreams ?? 0,
        handshake_timeout: inner.handshakeTimeoutMs,
        hold_inner_sessions: inner.holdSessions,
        max_pending_channels: inner.maxPendingChannels,
        max_held_sessions: inner.maxHeldSessions,
        connect_timeout: inner.limits.connectTimeoutMs,
        revocation_poll: feed?.running ? feed.retryMs : 0,
        feed_wait: (feed?.waitSec ?? feedWaitSec ?? 0) * 1000,
        feed_stale_after: feed?.staleAfterMs ?? feedStaleAfterMs ?? 0,
        renew: gateway.renewal.running,
      };
    },
    { logger, drainTimeoutMs: () => lifecycle?.drainTimeoutMs ?? config.drain_timeout },
  );

  const ops = await startOpsServer({
    listen: config.ops_listen,
    allowNonLoopback: config.ops_allow_remote,
    metrics,
    readiness: () =>
      enrolledReadiness(standing, () => {
        const t = gateway.pool.status();
        // Per proxy, for `status`: which tunnels are up.
        const proxies = t.proxies.map((p) => ({ proxyId: p.proxyId, state: p.state }));
        return t.up > 0
          ? {
              ready: true,
              reason: `tunnels up ${t.up}/${t.total}`,
              detail: { tunnelsUp: t.up, tunnelsTotal: t.total, proxies },
            }
          : { ready: false, reason: 'no tunnel up', detail: { tunnelsUp: 0, tunnelsTotal: t.total, proxies } };
      }),
  });
  lock.update({ ops: ops.url });
  // A renewal written by another process (`infisical-gateway renew` beside serve) is picked up without a restart.
  const watch = watchGeneration(store, () => {
    if (store.load().tlsChainPem !== gateway.state.tlsChainPem) void lifecycle?.reload();
  });
  lifecycle = new Lifecycle({
    notifier,
    log: logger,
    drainTimeoutMs: config.drain_timeout,
    hooks: {
      reload: async () => {
        const next = reloadConfig();
        await gateway.reload({ settings: settingsFrom(next), state: store.load() });
        store.trustConfiguredPins(next.ca_fingerprint, ca, logger);
        logger.level = next.log_level;
        if (lifecycle) lifecycle.drainTimeoutMs = next.drain_timeout;
        logRestartOnly(gatewayConfigSchema, config, next, logger);
        applied = next;
      },
      drain: async (deadlineMs) => {
        watch.stop();
        await gateway.drain(Math.max(0, deadlineMs - Date.now()));
        await ops.close();
        store.close();
        lock.release();
      },
    },
  });
  installSignalHandlers(lifecycle);
  gateway.start();
  logger.info(
    { gatewayUri: state.gatewayUri, proxies: state.proxies.length, ops: ops.url, database: store.db.name },
    'serving: connecting to proxies',
  );
  notifier.status(`connecting to ${state.proxies.length} proxies`);
  return { gateway, opsUrl: ops.url, lifecycle };
}
