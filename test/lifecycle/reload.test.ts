/**
 * Issue 16, an honest reload, against real daemon processes (one CA, one instance proxy, one gateway): each
 * daemon runs from a config file; SIGHUP with every key its schema marks `live` changed, then each key's value
 * in force, read back by the daemon from the parts that use it (`infisical_<name>_live_setting{key,value}`),
 * must be the new one, in the same process. SIGHUP with a `restart` key changed logs
 * "<key> changed, takes effect at restart" and leaves the running value. The sets of keys changed here are
 * compared with the schemas, so a key marked live later is not left out of this test.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { rootCertificates } from 'node:tls';
import { caConfigSchema } from '../../lib/ca/config.js';
import { gatewayConfigSchema } from '../../lib/gateway/config.js';
import { proxyConfigSchema } from '../../lib/proxy/config.js';
import { loadConfig } from '../../lib/runtime/config.js';
import { type ConfigSchema, formatValue } from '../../lib/runtime/config-schema.js';
import { type Daemon, startDeployment, waitFor } from './deploy.js';

/** `<prefix>live_setting{key="k",value="v"} 1` lines → key → value. */
function liveSettings(metrics: string, prefix: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = new RegExp(`^${prefix}live_setting\\{key="([a-z_]+)",value="((?:[^"\\\\]|\\\\.)*)"\\} 1$`, 'gm');
  for (const m of metrics.matchAll(re))
    out.set(
      m[1]!,
      m[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c)),
    );
  return out;
}

function liveKeys(schema: ConfigSchema): string[] {
  return Object.entries(schema.keys)
    .filter(([, spec]) => spec.reload === 'live')
    .map(([key]) => key)
    .sort();
}

/** The daemon's arguments without `flags` (and their values), with `--config path`. */
function fromFile(d: Daemon, path: string, flags: string[]): void {
  const args: string[] = [];
  for (let i = 0; i < d.args.length; i++) {
    if (flags.includes(d.args[i]!)) i++;
    else args.push(d.args[i]!);
  }
  d.args = [...args, '--config', path];
}

/** Each live key as the file gives it, as the daemon must now report it. */
function expected(schema: ConfigSchema, text: string): Map<string, string> {
  const { config } = loadConfig(schema, { readFile: () => text, flags: { config: '/reload.conf' }, env: {} });
  const out = new Map<string, string>();
  for (const key of liveKeys(schema)) {
    const value = (config as Record<string, unknown>)[key];
    out.set(key, value === undefined ? '' : formatValue(schema.keys[key]!.type, value));
  }
  return out;
}

const conf = (values: Record<string, string>) =>
  `${Object.entries(values)
    .map(([k, v]) => `${k} = ${v}`)
    .join('\n')}\n`;

async function reloadAndCheck(
  d: Daemon,
  schema: ConfigSchema,
  path: string,
  changed: Record<string, string>,
  tails: () => string,
): Promise<void> {
  const prefix = `infisical_${schema.daemon}_`;
  assert.deepEqual(Object.keys(changed).sort(), liveKeys(schema), `${d.name}: this test changes every live key`);
  const before = liveSettings(await d.metrics(), prefix);
  const want = expected(schema, conf(changed));
  for (const [key, value] of want) assert.notEqual(before.get(key), value, `${d.name}: ${key} is changed by the test`);
  const pid = d.pid;
  writeFileSync(path, conf(changed));
  d.hup();
  await waitFor(
    async () => liveSettings(await d.metrics(), prefix).get('drain_timeout') === want.get('drain_timeout'),
    {
      what: `${d.name} to reload`,
      timeoutMs: 30_000,
      detail: tails,
    },
  );
  const after = liveSettings(await d.metrics(), prefix);
  for (const [key, value] of want) assert.equal(after.get(key), value, `${d.name}: live key ${key} took effect`);
  assert.equal(d.pid, pid, `${d.name}: no restart`);
  assert.ok(!d.log().includes('takes effect at restart'), `${d.name}: no restart-only key changed yet`);
}

async function restartOnly(
  d: Daemon,
  schema: ConfigSchema,
  path: string,
  live: Record<string, string>,
  key: string,
  value: string,
  tails: () => string,
): Promise<void> {
  assert.equal(schema.keys[key]?.reload, 'restart');
  writeFileSync(path, conf({ ...live, [key]: value }));
  d.hup();
  await waitFor(() => d.log().includes(`${key} changed, takes effect at restart`), {
    what: `${d.name} to log that ${key} takes effect at restart`,
    timeoutMs: 30_000,
    detail: tails,
  });
  const line = d.logLines().find((l) => l['msg'] === `${key} changed, takes effect at restart`);
  assert.equal(line?.['key'], key);
}

test('SIGHUP applies every live key to the running CA, proxy and gateway, and logs a changed restart-only key', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 1 });
  t.after(() => d.close());
  try {
    const [ca, proxy, gw] = [d.ca, d.proxies[0]!, d.gateways[0]!];
    const tails = () => d.tails(40);

    // Each daemon from a config file: the flags that would hide the file's live keys are dropped.
    const caConf = join(d.dir, 'ca.conf');
    writeFileSync(caConf, '');
    fromFile(ca, caConf, ['--log-level']);
    await ca.restart();
    const proxyConf = join(d.dir, 'proxy.conf');
    writeFileSync(proxyConf, '');
    fromFile(proxy, proxyConf, ['--log-level']);
    await proxy.restart();
    const gwConf = join(d.dir, 'gateway.conf');
    const allow = { allow_cidrs: '127.0.0.1/32', allow_ports: String(d.target.port) };
    writeFileSync(gwConf, conf(allow));
    fromFile(gw, gwConf, ['--log-level', '--allow-cidr', '--allow-port']);
    await gw.restart();
    await gw.waitTunnels(1, 60_000);

    const caLive = {
      token_ttl: '20m',
      grant_ttl: '7m',
      supersede_grace: '3m',
      max_connections: '3000',
      max_connections_per_source: '900',
      login_failure_burst: '11',
      login_failure_refill: '7s',
      login_failure_delay_max: '40s',
      enroll_failure_burst: '12',
      enroll_failure_refill: '8s',
      enroll_failure_delay_max: '41s',
      signed_failure_burst: '13',
      signed_failure_refill: '9s',
      signed_failure_delay_max: '42s',
      log_level: 'debug',
      drain_timeout: '12s',
    };
    await reloadAndCheck(ca, caConfigSchema, caConf, caLive, tails);

    const proxyLive = {
      ca_fingerprint: d.ca.fingerprint,
      handshake_timeout: '8s',
      max_unauthenticated_per_source: '100',
      forward_timeout: '9s',
      max_tunnels_per_org: '50',
      max_streams_per_org: '60',
      idle_timeout: '10m',
      max_connections: '500',
      max_streams_per_gateway: '70',
      max_auth_attempts: '3',
      cert_skew: '2s',
      revocation_poll: '3s',
      feed_wait: '4s',
      feed_stale_after: '3m',
      renew: 'false',
      log_level: 'debug',
      drain_timeout: '11s',
    };
    await reloadAndCheck(proxy, proxyConfigSchema, proxyConf, proxyLive, tails);

    const upstreamCa = join(d.dir, 'upstream-ca.pem');
    writeFileSync(upstreamCa, `${rootCertificates[0]}\n`);
    const gwLive = {
      ca_fingerprint: d.ca.fingerprint,
      allow_cidrs: '127.0.0.1/32, 10.9.0.0/16',
      allow_hosts: 'db.internal',
      allow_ports: `${d.target.port}, 9000-9009`,
      targets: `echo=127.0.0.1:${d.target.port}`,
      http_upstream_tls: 'true',
      http_upstream_ca: upstreamCa,
      keepalive_interval: '3s',
      keepalive_count_max: '4',
      reconnect_base: '500ms',
      reconnect_cap: '20s',
      max_streams: '77',
      handshake_timeout: '7s',
      hold_inner_sessions: 'false',
      max_pending_channels: '33',
      max_held_sessions: '5',
      connect_timeout: '6s',
      revocation_poll: '2s',
      feed_wait: '5s',
      feed_stale_after: '2m',
      renew: 'false',
      log_level: 'debug',
      drain_timeout: '13s',
    };
    await reloadAndCheck(gw, gatewayConfigSchema, gwConf, gwLive, tails);
    // The gateway still serves, through the tunnel it brought up for the new keepalive (make-before-break).
    await gw.waitTunnels(1, 30_000);
    const c = await d.connect();
    const r = await d.transfer(c, 64 * 1024);
    assert.equal(r.ok, true, 'a transfer after the reload');

    // Restart-only keys: logged, and the running value kept.
    await restartOnly(ca, caConfigSchema, caConf, caLive, 'tls_min_version', '1.2', tails);
    const opsBefore = proxy.opsPort;
    await restartOnly(proxy, proxyConfigSchema, proxyConf, proxyLive, 'ops_allow_remote', 'true', tails);
    assert.equal((await proxy.readyz()).status, 200, `the proxy still answers on its ops port ${opsBefore}`);
    await restartOnly(gw, gatewayConfigSchema, gwConf, gwLive, 'ops_allow_remote', 'true', tails);
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
