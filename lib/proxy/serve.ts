/**
 * `infisical-proxy enroll` and `serve`: config → state database → ProxyServer → ops endpoint → systemd.
 * READY=1 once both listeners are bound; STATUS= "gateways, tunnels, streams"; SIGHUP re-reads config and
 * certificates from SQLite without dropping a tunnel or a stream; SIGTERM drains (bounded by drain_timeout).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPrivateKey } from '../pki/keys.js';
import { CaClient } from '../protocol/ca-client.js';
import { GatewayError } from '../protocol/errors.js';
import type { ConfigOf } from '../runtime/config-schema.js';
import { parseHostPort } from '../runtime/config-schema.js';
import { installSignalHandlers, Lifecycle } from '../runtime/lifecycle.js';
import type { Logger } from '../runtime/log.js';
import { DaemonMetrics } from '../runtime/metrics.js';
import { type OpsServer, startOpsServer } from '../runtime/ops.js';
import { SystemdNotifier } from '../runtime/systemd.js';
import { stateDirectory } from '../store/db.js';
import type { proxyConfigSchema } from './config.js';
import { enroll, renew, renewalDelayMs } from './enroll.js';
import { RevocationFeedPoller } from './feed.js';
import { type ProxyLimits, ProxyServer } from './proxy.js';
import { credentialsOf, type ProxyState, ProxyStore } from './state.js';

export const PROXY_VERSION = '0.1.0';
const DEFAULT_SSH_LISTEN = '0.0.0.0:2222';
const DEFAULT_TLS_LISTEN = '0.0.0.0:8443';

/** The loaded configuration (the schema's generics widen `optional`, so the shape is spelled out). */
export interface ProxyConfig {
  readonly ca_url: string | undefined;
  readonly ca_fingerprint: string | undefined;
  readonly enrollment_token: string | undefined;
  readonly admin_client_id: string | undefined;
  readonly client_secret_file: string | undefined;
  readonly scope: string | undefined;
  readonly org_id: string | undefined;
  readonly proxy_id: string | undefined;
  readonly hostnames: readonly string[];
  readonly ssh_address: string | undefined;
  readonly tls_address: string | undefined;
  readonly ssh_listen: string | undefined;
  readonly tls_listen: string | undefined;
  readonly handshake_timeout: number;
  readonly idle_timeout: number;
  readonly max_connections: number;
  readonly max_streams_per_gateway: number;
  readonly max_auth_attempts: number;
  readonly revocation_poll: number;
  readonly renew: boolean;
  readonly log_level: string;
  readonly ops_listen: string;
  readonly ops_allow_remote: boolean;
  readonly state_directory: string | undefined;
  readonly drain_timeout: number;
}

export function asProxyConfig(config: ConfigOf<(typeof proxyConfigSchema)['keys']>): ProxyConfig {
  return config as unknown as ProxyConfig;
}

export function databasePath(config: ProxyConfig, env: NodeJS.ProcessEnv = process.env): string {
  return join(stateDirectory('proxy', { override: config.state_directory, env }), 'proxy.db');
}

export function limitsFrom(config: ProxyConfig): ProxyLimits {
  return {
    handshakeTimeoutMs: config.handshake_timeout,
    idleTimeoutMs: config.idle_timeout,
    maxConnections: config.max_connections,
    maxAuthAttempts: config.max_auth_attempts,
    maxTunnelAttempts: 3,
    maxStreamsPerGateway: config.max_streams_per_gateway,
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
  const sshListen = config.ssh_listen ?? DEFAULT_SSH_LISTEN;
  const tlsListen = config.tls_listen ?? DEFAULT_TLS_LISTEN;
  let client = new CaClient({ url: caUrl, fingerprint: caFingerprint });
  const token = config.enrollment_token;
  if (!token) {
    const clientId = required(config.admin_client_id, '--token or --admin-client-id');
    const secretFile = required(config.client_secret_file, '--client-secret-file');
    client = (await client.loginAs({ clientId, clientSecret: readFileSync(secretFile, 'utf8').trim() })).client;
  }
  const state = await enroll({
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
    ...(token ? { enrollmentToken: token } : {}),
  });
  const path = databasePath(config);
  const store = ProxyStore.open(path);
  try {
    store.saveEnrollment(state);
  } finally {
    store.close();
  }
  return {
    proxyUri: state.proxyUri,
    database: path,
    ssh: `${state.sshListen} (advertised ${state.sshAddress})`,
    tls: `${state.tlsListen} (advertised ${state.tlsAddress})`,
    notAfter: state.notAfter,
  };
}

export interface ServeHandle {
  proxy: ProxyServer;
  ops: OpsServer;
  lifecycle: Lifecycle;
  feed: RevocationFeedPoller;
}

function listenOf(value: string, what: string): { host: string; port: number } {
  const hp = parseHostPort(value);
  if (!hp) throw new GatewayError('E_CONFIG_INVALID', `${what}: "${value}" is not host:port`);
  return hp;
}

/** Runs the proxy until SIGTERM. `reloadConfig` re-reads flags/env/file (SIGHUP). */
export async function serve(
  config: ProxyConfig,
  logger: Logger,
  reloadConfig: () => ProxyConfig,
): Promise<ServeHandle> {
  const notifier = new SystemdNotifier();
  notifier.status('opening state');
  const store = ProxyStore.open(databasePath(config));
  let state: ProxyState = store.load();
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
  const ops = await startOpsServer({
    listen: config.ops_listen,
    allowNonLoopback: config.ops_allow_remote,
    metrics,
    readiness: () => proxy.readiness(),
  });
  const ca = new CaClient({ url: state.caUrl, fingerprint: state.caFingerprint });
  const feed = new RevocationFeedPoller({
    client: ca,
    current: () => ({
      certificate: state.tlsChainPem,
      privateKey: loadPrivateKey(state.tlsKeyPem),
      feedKey: state.revocationFeedKey,
    }),
    source: {
      seq: () => store.feedSeq(),
      record: (e) => store.addRevocation(e),
      setSeq: (seq) => store.setFeedSeq(seq),
    },
    apply: (e) => proxy.revoke(e),
    intervalMs: config.revocation_poll,
    log: logger,
  });

  let current = config;
  let renewal: NodeJS.Timeout | undefined;
  const scheduleRenewal = (): void => {
    clearTimeout(renewal);
    if (!current.renew) return;
    const leaf = new X509Certificate(state.tlsChainPem);
    const delay = renewalDelayMs(Date.parse(leaf.validFrom), Date.parse(state.notAfter), Date.now());
    renewal = setTimeout(() => void renewNow(), Math.min(delay, 2 ** 31 - 1));
    renewal.unref();
  };
  const renewNow = async (): Promise<void> => {
    try {
      const next = await renew(ca, state);
      store.saveEnrollment(next);
      proxy.reload(credentialsOf(next));
      state = next;
      logger.info({ proxyUri: state.proxyUri, notAfter: state.notAfter }, 'certificates renewed');
    } catch (err) {
      logger.warn({ err }, 'renewal failed; retrying in 5 minutes');
      renewal = setTimeout(() => void renewNow(), 5 * 60_000);
      renewal.unref();
      return;
    }
    scheduleRenewal();
  };

  const statusTimer = setInterval(() => notifier.status(proxy.status()), 10_000);
  statusTimer.unref();
  const lifecycle = new Lifecycle({
    notifier,
    log: logger,
    drainTimeoutMs: config.drain_timeout,
    hooks: {
      reload: () => {
        const nextConfig = reloadConfig();
        const nextState = store.load();
        // Everything is validated before anything is swapped (ProxyServer.reload); listeners stay bound.
        proxy.reload(credentialsOf(nextState), limitsFrom(nextConfig));
        for (const r of store.revocations()) proxy.revoke(r);
        state = nextState;
        current = nextConfig;
        if (nextConfig.ssh_listen !== config.ssh_listen || nextConfig.tls_listen !== config.tls_listen) {
          logger.warn({}, 'a changed listen address takes effect at the next restart');
        }
        scheduleRenewal();
      },
      drain: async (_deadlineMs, signal) => {
        feed.stop();
        clearTimeout(renewal);
        clearInterval(statusTimer);
        await proxy.drain(signal);
        await ops.close();
        store.close();
      },
    },
  });
  installSignalHandlers(lifecycle);
  feed.start();
  scheduleRenewal();
  logger.info(
    { proxyUri: state.proxyUri, ssh: proxy.sshPort, tls: proxy.tlsPort, ops: ops.url, database: store.db.name },
    'serving',
  );
  lifecycle.ready(proxy.status());
  return { proxy, ops, lifecycle, feed };
}
