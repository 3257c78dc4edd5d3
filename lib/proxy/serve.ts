/**
 * `infisical-proxy enroll` and `serve`: config → state database → ProxyServer → ops endpoint → systemd.
 * READY=1 once both listeners are bound; STATUS= "gateways, tunnels, streams"; SIGHUP re-reads config and
 * certificates from SQLite without dropping a tunnel or a stream; SIGTERM drains (bounded by drain_timeout).
 */
import { X509Certificate } from 'node:crypto';
import { enrollAndSave, enrolledDatabasePath, openForServe, renewAndStatus } from '../enrolled/commands-of.js';
import { enrollmentCredential } from '../enrolled/credentials.js';
import { FeedFollower, type FeedTiming, isSelfRefusal, selfRefusalReason } from '../enrolled/feed.js';
import { enrolledReadiness, registerStandingMetrics } from '../enrolled/health.js';
import type { RenewResult } from '../enrolled/renew.js';
import { RenewalScheduler } from '../enrolled/renewal.js';
import { rotationFollower } from '../enrolled/rotation.js';
import { type StatusReport, sshEntry, x509Entry } from '../enrolled/status.js';
import { watchGeneration } from '../enrolled/store.js';
import { GatewayError } from '../errors/codes.js';
import { loadPrivateKey } from '../pki/keys.js';
import type { ConfigOf } from '../runtime/config-schema.js';
import { parseHostPort } from '../runtime/config-schema.js';
import { installSignalHandlers, Lifecycle } from '../runtime/lifecycle.js';
import type { Logger } from '../runtime/log.js';
import { DaemonMetrics } from '../runtime/metrics.js';
import { type OpsServer, startOpsServer } from '../runtime/ops.js';
import { logRestartOnly, registerLiveSettings } from '../runtime/reload.js';
import { DEFAULT_CERT_SKEW_MS } from './admission.js';
import { type ProxyConfigSchema, proxyConfigSchema } from './config.js';
import { enroll, renew } from './enroll.js';
import { type ProxyLimits, ProxyServer } from './proxy.js';
import { credentialsOf, type ProxyState, ProxyStore } from './state.js';

export const PROXY_VERSION = '0.1.0';
const DEFAULT_SSH_LISTEN = '0.0.0.0:2222';
const DEFAULT_TLS_LISTEN = '0.0.0.0:8443';

/** The loaded configuration, typed by the schema that parsed it. */
export type ProxyConfig = ConfigOf<ProxyConfigSchema['keys']>;

export function databasePath(config: ProxyConfig, env: NodeJS.ProcessEnv = process.env): string {
  return enrolledDatabasePath('proxy', config.state_directory, env);
}

export function limitsFrom(config: ProxyConfig): ProxyLimits {
  return {
    handshakeTimeoutMs: config.handshake_timeout,
    idleTimeoutMs: config.idle_timeout,
    maxConnections: config.max_connections,
    maxUnauthenticatedPerSource: config.max_unauthenticated_per_source,
    forwardTimeoutMs: config.forward_timeout,
    maxAuthAttempts: config.max_auth_attempts,
    maxTunnelAttempts: 3,
    maxStreamsPerGateway: config.max_streams_per_gateway,
    maxTunnelsPerOrg: config.max_tunnels_per_org,
    maxStreamsPerOrg: config.max_streams_per_org,
    certSkewMs: config.cert_skew,
  };
}

function required(value: string | undefined, flag: string): string {
  if (!value) throw new GatewayError('E_CONFIG_INVALID', `enroll needs ${flag}`);
  return value;
}

/** "host:port" → the advertised address with the first hostname when the listen host is a wildcard. */
function advertised(explicit: string | undefined, listen: string, hostname: string): string {
  if (explicit) return explicit;
  const port = parseHostPort(listen)?.port ?? 0;
  return `${hostname.includes(':') ? `[${hostname}]` : hostname}:${port}`;
}

/** Enrolls with the CA and stores the result; returns a summary for the operator. */
export async function enrollCommand(config: ProxyConfig): Promise<Record<string, unknown>> {
  const caUrl = required(config.ca_url, '--ca');
  const caFingerprint = required(config.ca_fingerprint, '--ca-fingerprint');
  const scope = required(config.scope, '--scope instance|org') as 'instance' | 'org';
  const orgId = scope === 'org' ? required(config.org_id, '--org (for an org proxy)') : null;
  if (scope === 'instance' && config.org_id) {
    throw new GatewayError('E_CONFIG_INVALID', 'an instance proxy belongs to no org: drop --org');
  }
  const proxyId = required(config.proxy_id, '--proxy-id');
  const hostname = required(config.hostnames[0], '--hostname');
  // Read (and a loose secret file refused) before the state directory is touched.
  const credential = enrollmentCredential(config, {
    clientId: config.admin_client_id,
    clientIdFlag: '--admin-client-id',
  });
  const path = databasePath(config);
  const sshListen = config.ssh_listen ?? DEFAULT_SSH_LISTEN;
  const tlsListen = config.tls_listen ?? DEFAULT_TLS_LISTEN;
  const state = await enrollAndSave({
    role: 'proxy',
    path,
    caUrl,
    caFingerprint,
    credential,
    enroll: (client, enrollmentToken) =>
      enroll({
        client,
        caUrl,
        caFingerprint,
        scope,
        orgId,
        proxyId,
        hostnames: [...config.hostnames],
        sshListen,
        tlsListen,
        sshAddress: advertised(config.ssh_address, sshListen, hostname),
        tlsAddress: advertised(config.tls_address, tlsListen, hostname),
        ...(enrollmentToken ? { enrollmentToken } : {}),
      }),
    open: (p) => ProxyStore.open(p),
  });
  return {
    proxyUri: state.proxyUri,
    database: path,
    ssh: `${state.sshListen} (advertised ${state.sshAddress})`,
    tls: `${state.tlsListen} (advertised ${state.tlsAddress})`,
    notAfter: state.notAfter,
  };
}

const commands = renewAndStatus({
  role: 'proxy',
  open: (p) => ProxyStore.open(p),
  renew,
  stored: (store) => {
    const s = store.load();
    return {
      uri: s.proxyUri,
      orgId: s.orgId,
      id: s.proxyId,
      certificates: [x509Entry('tls', s.tlsChainPem), sshEntry('ssh host', s.sshHostCertificate)],
      revoked: store
        .revocations()
        .some(
          (r) => r.kind === 'proxy' && (r.subject === s.proxyId || r.subject === s.proxyUri) && r.orgId === s.orgId,
        ),
      feedSeq: store.feedSeq(),
      extra: {
        ssh: `${s.sshListen} (advertised ${s.sshAddress})`,
        tls: `${s.tlsListen} (advertised ${s.tlsAddress})`,
      },
    };
  },
  counts: { gateways: 'gateways', tunnels: 'tunnels', 'streams open': 'streams' },
});

/** Renews the stored certificates now (also beside a running serve, which picks them up). */
export const renewCommand = (config: ProxyConfig): Promise<RenewResult> => commands.renew(databasePath(config));

/** What the state directory and a running serve say (reads only, beside serve). */
export const statusCommand = (config: ProxyConfig): Promise<StatusReport> => commands.status(databasePath(config));

export interface ServeHandle {
  proxy: ProxyServer;
  ops: OpsServer;
  lifecycle: Lifecycle;
  feed: FeedFollower | undefined;
}

function listenOf(value: string, what: string): { host: string; port: number } {
  const hp = parseHostPort(value);
  if (!hp) throw new GatewayError('E_CONFIG_INVALID', `${what}: "${value}" is not host:port`);
  return hp;
}

function feedTiming(c: ProxyConfig): FeedTiming {
  return { waitSec: Math.round(c.feed_wait / 1000), retryMs: c.revocation_poll, staleAfterMs: c.feed_stale_after };
}

/** Runs the proxy until SIGTERM. `reloadConfig` re-reads flags/env/file (SIGHUP). */
export async function serve(
  config: ProxyConfig,
  logger: Logger,
  reloadConfig: () => ProxyConfig,
): Promise<ServeHandle> {
  const { notifier, lock, store } = openForServe('proxy', databasePath(config), (p) => ProxyStore.open(p));
  let state: ProxyState = store.load();
  const missed = store.rotationMissed();
  if (missed !== undefined) {
    store.close();
    throw new GatewayError('E_ROTATION_MISSED', missed);
  }
  const self = store
    .revocations()
    .find((r) => r.kind === 'proxy' && r.subject === state.proxyId && r.orgId === state.orgId);
  if (self) {
    store.close();
    throw new GatewayError('E_SUBJECT_REVOKED', `proxy ${state.proxyId} was revoked; enroll it again to serve`);
  }
  const metrics = new DaemonMetrics('proxy');
  const proxy = await ProxyServer.start({
    credentials: credentialsOf(state),
    limits: limitsFrom(config),
    ssh: listenOf(config.ssh_listen ?? state.sshListen, 'ssh_listen'),
    tls: listenOf(config.tls_listen ?? state.tlsListen, 'tls_listen'),
    metrics,
    log: logger,
    revocations: store.revocations(),
  });
  const ca = store.serveCaClient(state, config, `infisical-proxy/${PROXY_VERSION}`, logger);

  let revoked: string | undefined;
  const enterRevoked = (reason: string): void => {
    if (revoked !== undefined) return;
    revoked = reason;
    logger.error(
      { proxyUri: state.proxyUri, reason },
      'this proxy is revoked: closing its listeners, tunnels and streams',
    );
    store.addRevocation({ kind: 'proxy', subject: state.proxyId, orgId: state.orgId });
    if (reason.startsWith('E_ROTATION_MISSED')) store.setRotationMissed(reason);
    renewal.stop();
    void feed?.stop();
    void proxy.stop();
    notifier.status(`REVOKED: ${reason}; listeners closed; enroll again`);
  };
  const isSelf = (e: { kind: string; subject: string; orgId: string | null }): boolean =>
    e.kind === 'proxy' && (e.subject === state.proxyUri || (e.subject === state.proxyId && e.orgId === state.orgId));

  const feed =
    config.revocation_poll > 0
      ? new FeedFollower({
          client: ca,
          current: () => ({
            certificate: state.tlsChainPem,
            privateKey: loadPrivateKey(state.tlsKeyPem),
            feedKey: state.revocationFeedKey,
          }),
          position: { seq: () => store.feedSeq(), setSeq: (seq) => store.setFeedSeq(seq) },
          apply: (entries) => {
            for (const e of entries) {
              store.addRevocation(e);
              proxy.revoke(e);
              if (isSelf(e)) enterRevoked(`proxy ${e.subject} was revoked`);
            }
          },
          rotation: rotationFollower({
            store,
            renewNow: () => renewal.renewNow(),
            pinApiRoot: (fp) => {
              ca.addPin(fp);
              store.addCaPin(fp);
            },
            log: logger,
          }),
          onRevokedSelf: (err) => enterRevoked(selfRefusalReason(err)),
          ...feedTiming(config),
          log: logger,
        })
      : undefined;

  let current = config;
  const renewal = new RenewalScheduler({
    windows: () => {
      const leaf = new X509Certificate(state.tlsChainPem);
      return [{ notBefore: new Date(leaf.validFrom), notAfter: new Date(state.notAfter) }];
    },
    renew: async () => {
      // `renew` run beside serve may have renewed already: renew from what is stored, never from a stale copy.
      const next = await renew(ca, store.load());
      store.saveEnrollment(next);
      proxy.reload(credentialsOf(next));
      state = next;
      logger.info({ proxyUri: state.proxyUri, notAfter: state.notAfter }, 'certificates renewed');
    },
    isFinal: isSelfRefusal,
    onFinal: (err) => enterRevoked(selfRefusalReason(err as GatewayError)),
    retryMs: 5 * 60_000,
    log: logger,
  });

  const standing = { revoked: () => revoked, feed: () => feed?.health() };
  registerStandingMetrics(metrics, standing, {
    notAfterMs: () => Date.parse(state.notAfter),
    nextRenewalMs: () => renewal.nextAt,
  });
  // What SIGHUP applied, read back from the parts that use it (the last applied config only for the CA pin,
  // which is added to the client's pins).
  registerLiveSettings(
    metrics,
    proxyConfigSchema,
    () => {
      const limits = proxy.limits;
      const timing = feed?.timing;
      return {
        ca_fingerprint: current.ca_fingerprint,
        handshake_timeout: limits.handshakeTimeoutMs,
        max_unauthenticated_per_source: limits.maxUnauthenticatedPerSource,
        forward_timeout: limits.forwardTimeoutMs,
        max_tunnels_per_org: limits.maxTunnelsPerOrg,
        max_streams_per_org: limits.maxStreamsPerOrg,
        idle_timeout: limits.idleTimeoutMs,
        max_connections: limits.maxConnections,
        max_streams_per_gateway: limits.maxStreamsPerGateway,
        max_auth_attempts: limits.maxAuthAttempts,
        cert_skew: limits.certSkewMs ?? DEFAULT_CERT_SKEW_MS,
        revocation_poll: timing?.running ? timing.retryMs : 0,
        feed_wait: (timing?.waitSec ?? 0) * 1000,
        feed_stale_after: timing?.staleAfterMs ?? current.feed_stale_after,
        renew: renewal.running,
      };
    },
    // Scraped only once ops answers, after the lifecycle below exists (no await between the two).
    { logger, drainTimeoutMs: () => lifecycle.drainTimeoutMs },
  );
  const ops = await startOpsServer({
    listen: config.ops_listen,
    allowNonLoopback: config.ops_allow_remote,
    metrics,
    readiness: () => enrolledReadiness(standing, () => proxy.readiness()),
  });
  lock.update({ ops: ops.url });

  const statusTimer = setInterval(() => {
    if (revoked === undefined) notifier.status(proxy.status());
  }, 10_000);
  statusTimer.unref();
  // A renewal written by another process (`infisical-proxy renew` beside serve) is picked up without a restart.
  const watch = watchGeneration(store, () => {
    if (store.load().tlsChainPem !== state.tlsChainPem) void lifecycle.reload();
  });
  const lifecycle = new Lifecycle({
    notifier,
    log: logger,
    drainTimeoutMs: config.drain_timeout,
    hooks: {
      reload: async () => {
        if (revoked !== undefined) return;
        const nextConfig = reloadConfig();
        const nextState = store.load();
        // Everything is validated before anything is swapped (ProxyServer.reload); listeners stay bound.
        proxy.reload(credentialsOf(nextState), limitsFrom(nextConfig));
        store.trustConfiguredPins(nextConfig.ca_fingerprint, ca, logger);
        for (const r of store.revocations()) proxy.revoke(r);
        state = nextState;
        current = nextConfig;
        feed?.configure(feedTiming(nextConfig));
        if (feed && nextConfig.revocation_poll > 0) feed.start();
        else if (feed) await feed.stop();
        else if (nextConfig.revocation_poll > 0) {
          logger.warn(
            { key: 'revocation_poll' },
            'revocation_poll changed, takes effect at restart (the feed was off at start)',
          );
        }
        if (current.renew) renewal.start();
        else renewal.stop();
        logger.level = nextConfig.log_level;
        lifecycle.drainTimeoutMs = nextConfig.drain_timeout;
        logRestartOnly(proxyConfigSchema, config, nextConfig, logger);
      },
      drain: async (_deadlineMs, signal) => {
        watch.stop();
        await feed?.stop();
        renewal.stop();
        clearInterval(statusTimer);
        await proxy.drain(signal);
        await ops.close();
        store.close();
        lock.release();
      },
    },
  });
  installSignalHandlers(lifecycle);
  feed?.start();
  if (config.renew) renewal.start();
  logger.info(
    { proxyUri: state.proxyUri, ssh: proxy.sshPort, tls: proxy.tlsPort, ops: ops.url, database: store.db.name },
    'serving',
  );
  lifecycle.ready(proxy.status());
  return { proxy, ops, lifecycle, feed };
}
