/**
 * New-stream setup (issue 13): with a grant already held, the time from a connect to the first echoed byte.
 * Every component is a real process started through its CLI (test/lifecycle harness: CA, one proxy, one
 * gateway, `infisical-connect tcp`); the private target is the harness's echo server.
 *
 *   - tcp mode: a local client connects to the `infisical-connect tcp` listener, as users do, writes one byte
 *     and waits for it to come back (listener accept → outer TLS → proxy → SSH channel → gateway → inner TLS →
 *     target dial → echo);
 *   - ping mode: the client library's ping-mode dial (what `infisical-connect ping` runs per proxy) from this
 *     process to the same proxy and gateway processes, then one echoed probe;
 *   - references in the same run: raw loopback to the echo target, OpenSSH `ssh -R` (a private sshd on
 *     127.0.0.1, certificates on both sides, aes128-gcm) forwarding to the same target, and the hand-built chain
 *     of bench/datapath.ts (socat TLS client in socat TLS client → socat TLS server → sshd/`ssh -R` → socat
 *     TLS server → the target: full handshakes, no resumption, as those tools do by default).
 *
 * Each path: WARMUP streams not counted, then STREAMS (BENCH_SETUP_STREAMS, default 200) one after the other,
 * in rounds of one stream per path, GAP_MS apart.
 * The ping rows also compare, in the same run, the probe sent after the gateway's status line (as before
 * firstBytes) and the next relay opened as soon as a stream opened (as before the refill waited for its answer).
 * The client library's own per-step timings (outer TLS, proxy status line, inner TLS + gateway status) are
 * printed beside the ping figures: where the milliseconds go (docs/performance.md, "New-stream setup").
 * BENCH_SETUP_TRACE=<dir>: every process also records its GCs and late event loops (bench/stall-trace.ts), and
 * the slowest 5 % of the tcp and ping streams are set beside them (bench/setup-slow.ts, <dir>/slow.txt).
 * BENCH_SETUP_CACHE_AB=1: a second deployment without THE verifier's path cache, measured in the same rounds.
 * Always: a second deployment whose gateway holds no inner sessions (`hold_inner_sessions = false` in its config
 * file: no `tcp+go`, no `ping+go`, as an older gateway), tcp and ping measured in the same rounds as references.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { CaGrantSource } from '../lib/client/ca-source.js';
import { GatewayConnector } from '../lib/client/connector.js';
import type { RelayedStream } from '../lib/client/dial.js';
import { grantTls } from '../lib/client/grant-tls.js';
import { CaClient } from '../lib/protocol/ca-client.js';
import { TempDir } from '../test/helpers/openssh.js';
import { type Deployment, startDeployment } from '../test/lifecycle/deploy.js';
import { startSshReference } from './client.js';
import { startChain } from './datapath.js';
import { reportSlowStreams, type TracedStream } from './setup-slow.js';
import { type BenchRow, fmt, percentile } from './table.js';

const STREAMS = Math.max(10, Number(process.env['BENCH_SETUP_STREAMS'] ?? 200));
const WARMUP = 10;

type Setup = () => Promise<number>;

/** connect → write one byte → first byte back, on a plain TCP port (a listener of ours, sshd's, the target). */
function viaPort(port: number): Setup {
  return () =>
    new Promise<number>((resolve, reject) => {
      const t0 = performance.now();
      const s = net.connect(port, '127.0.0.1');
      s.setNoDelay(true);
      s.once('connect', () => s.write(Buffer.from([0x2a])));
      s.once('data', () => {
        const ms = performance.now() - t0;
        s.destroy();
        resolve(ms);
      });
      s.once('error', reject);
      s.once('close', () => reject(new Error(`stream via port ${port} closed before its echo`)));
    });
}

/** Between two streams: the previous path's work in the background (its next relay) is done before the next. */
const GAP_MS = 40;

/**
 * Every path's setup times, measured in rounds of one stream per path: the machine is shared, and a busy
 * moment then costs every path alike instead of the one measured at the time. Streams are GAP_MS apart, so
 * one path's relay opened ahead does not land on the next path's stream.
 */
async function measureInterleaved(
  paths: Record<string, Setup>,
  starts: Record<string, number[]> = {},
): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = Object.fromEntries(Object.keys(paths).map((k) => [k, []]));
  for (const name of Object.keys(paths)) starts[name] = [];
  for (let i = 0; i < WARMUP + STREAMS; i++) {
    for (const [name, setup] of Object.entries(paths)) {
      const at = performance.timeOrigin + performance.now();
      const ms = await setup();
      if (i >= WARMUP) {
        out[name]!.push(ms);
        starts[name]!.push(at);
      }
      await new Promise((r) => setTimeout(r, GAP_MS));
    }
  }
  return out;
}

/** Ping mode from this process, against the deployment's proxy and gateway processes. */
function pingConnector(d: Deployment, warmRelayMs?: number, warmRefillDelayMs?: number): GatewayConnector {
  const source = new CaGrantSource({
    ca: new CaClient({ url: d.ca.url, fingerprint: d.ca.fingerprint }),
    clientId: d.app.clientId,
    clientSecret: readFileSync(d.app.secretFile, 'utf8').trim(),
  });
  return new GatewayConnector({
    source,
    orgId: d.org,
    gatewayId: d.gateways[0]!.gatewayId,
    ...(warmRelayMs === undefined ? {} : { warmRelayMs }),
    ...(warmRefillDelayMs === undefined ? {} : { warmRefillDelayMs }),
  });
}

type Step = Pick<RelayedStream, 'timings' | 'warm' | 'held'>;

const PROBE = Buffer.from([0x2a]);

/**
 * The probe goes with the inner handshake's end (dial.ts firstBytes), as infisical-connect tcp sends a
 * connection's first bytes; with `afterStatus`, only once the gateway's status line came (as before).
 */
function viaPing(
  connector: GatewayConnector,
  d: Deployment,
  steps: Step[],
  o: { afterStatus?: boolean; fullOuter?: boolean } = {},
): Setup {
  const spec = { host: d.target.host, port: d.target.port };
  const afterStatus = o.afterStatus ?? false;
  return async () => {
    // fullOuter: the grant's outer sessions forgotten, so the outer handshake is a full one (as before resumption).
    if (o.fullOuter) grantTls(await connector.grant(spec, 'ping')).outerSessions.clear();
    const t0 = performance.now();
    const stream = await connector.open(spec, 'ping', afterStatus ? {} : { firstBytes: () => PROBE });
    const socket = stream.socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('data', () => resolve());
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('ping stream closed before its echo')));
      if (stream.sentFirst === 0) socket.write(PROBE);
    });
    const ms = performance.now() - t0;
    connector.answered(); // as infisical-connect tcp does at a stream's first byte back: the next relay opens now
    socket.destroy();
    steps.push({ timings: stream.timings, warm: stream.warm ?? false, held: stream.held ?? false });
    return ms;
  };
}

const pp = (v: number[]) => `${fmt.ms(percentile(v, 50))} / ${fmt.ms(percentile(v, 99))}`;

/** CPU time (user + system) a process has used so far, ms; from /proc (this machine's clock tick: 100 Hz). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime: fields 14 and 15 of stat(5)
}

const CPU_STREAMS = 50;

/** The CPU each process spends per stream of one path, over CPU_STREAMS streams in a row. */
async function cpuPerStream(setup: Setup, pids: Record<string, number | undefined>): Promise<string> {
  const before = Object.entries(pids).map(([name, pid]) => [name, cpuMs(pid)] as const);
  const self0 = process.cpuUsage();
  for (let i = 0; i < CPU_STREAMS; i++) await setup();
  const self = process.cpuUsage(self0);
  const cpu = before.map(([name, t0]) => `${name} ${((cpuMs(pids[name]) - t0) / CPU_STREAMS).toFixed(2)}`);
  cpu.push(`this process ${((self.user + self.system) / 1000 / CPU_STREAMS).toFixed(2)}`);
  return `CPU ms per stream: ${cpu.join(', ')}`;
}

/** The processes `start` spawns run with `NODE_OPTIONS=--import=<file>` (a module of bench/) added. */
async function preloaded<T>(file: string, start: () => Promise<T>): Promise<T> {
  const saved = process.env['NODE_OPTIONS'];
  process.env['NODE_OPTIONS'] = `${saved ?? ''} --import=${new URL(file, import.meta.url).href}`.trim();
  try {
    return await start();
  } finally {
    if (saved === undefined) delete process.env['NODE_OPTIONS'];
    else process.env['NODE_OPTIONS'] = saved;
  }
}

/** With BENCH_SETUP_TRACE, the processes started here (and this one) run bench/stall-trace.ts. */
async function traced<T>(start: () => Promise<T>): Promise<T> {
  const dir = process.env['BENCH_SETUP_TRACE'];
  if (!dir) return start();
  process.env['BENCH_STALL_TRACE_DIR'] = dir;
  await import('./stall-trace.js');
  return preloaded('./stall-trace.js', start);
}

/**
 * With BENCH_SETUP_CACHE_AB, a second deployment whose daemons and `infisical-connect` run without THE
 * verifier's path cache (bench/path-cache-off.ts), measured in the same rounds as the first one (tcp mode: the
 * bench process is then only the local client, so no cache of its own is involved).
 */
async function withoutPathCache(): Promise<{ d: Deployment; port: number; pid: number | undefined } | undefined> {
  if (!process.env['BENCH_SETUP_CACHE_AB']) return undefined;
  const d = await preloaded('./path-cache-off.js', () =>
    startDeployment({ proxies: 1, gateways: 1, logLevel: 'warn' }),
  );
  try {
    const c = await preloaded('./path-cache-off.js', () => d.connect());
    return { d, port: c.port, pid: c.pid };
  } catch (err) {
    await d.close();
    throw err;
  }
}

/**
 * A second deployment whose gateway holds no inner sessions (its config file says `hold_inner_sessions = false`,
 * so it offers no `tcp+go` or `ping+go`: as an older gateway), with its own `infisical-connect tcp` and a ping
 * connector, measured in the same rounds: tcp and ping modes with the relay opened ahead, the inner session not.
 */
async function withoutGo(
  dir: TempDir,
): Promise<{ d: Deployment; port: number; held: () => number; ping: GatewayConnector }> {
  const conf = dir.write('gateway-no-hold.conf', 'hold_inner_sessions = false\n');
  const d = await startDeployment({ proxies: 1, gateways: 1, logLevel: 'warn', gatewayArgs: ['--config', conf] });
  try {
    const c = await d.connect();
    const held = () => c.events().filter((e) => e['event'] === 'opened' && e['held'] === true).length;
    return { d, port: c.port, held, ping: pingConnector(d) };
  } catch (err) {
    await d.close();
    throw err;
  }
}

const cacheHits = async (d: Deployment) =>
  `proxy ${(await d.proxies[0]!.metric('infisical_proxy_verifier_path_cache_lookups', { result: 'hit' })) ?? 0}, ` +
  `gateway ${(await d.gateways[0]!.metric('infisical_gateway_verifier_path_cache_lookups', { result: 'hit' })) ?? 0}`;

export async function benchSetup(): Promise<BenchRow[]> {
  const dir = new TempDir('bench-setup-');
  const d = await traced(() => startDeployment({ proxies: 1, gateways: 1, logLevel: 'warn' }));
  let ssh: { port: number; stop(): Promise<void> } | undefined;
  let chain: Awaited<ReturnType<typeof startChain>> | undefined;
  let noCache: Awaited<ReturnType<typeof withoutPathCache>>;
  let noGo: Awaited<ReturnType<typeof withoutGo>> | undefined;
  try {
    noCache = await withoutPathCache();
    noGo = await withoutGo(dir);
    const connect = await traced(() => d.connect());
    const connectCold = await d.connect({ args: ['--warm-relay', '0'] });
    const connectNoMore = await preloaded('./connect-without-more-bytes.js', () => d.connect());
    ssh = await startSshReference(dir, d.target.port);
    chain = await startChain(dir, d.target.port);
    const warm = pingConnector(d);
    const warmAfter = pingConnector(d);
    const warmAtOnce = pingConnector(d, undefined, 0);
    const cold = pingConnector(d, 0);
    const coldFull = pingConnector(d, 0);
    for (const c of [warm, warmAfter, warmAtOnce, cold, coldFull])
      await c.grant({ host: d.target.host, port: d.target.port }, 'ping');
    await noGo.ping.grant({ host: noGo.d.target.host, port: noGo.d.target.port }, 'ping');
    const noGoSteps: Step[] = [];
    const daemons = { proxy: d.proxies[0]!.pid, gateway: d.gateways[0]!.pid };
    const warmSteps: Step[] = [];
    const coldSteps: Step[] = [];
    const coldFullSteps: Step[] = [];
    const pingWarm = viaPing(warm, d, warmSteps);
    const pingCold = viaPing(cold, d, coldSteps);
    const starts: Record<string, number[]> = {};
    const r = await measureInterleaved(
      {
        tcp: viaPort(connect.port),
        tcpCold: viaPort(connectCold.port),
        tcpNoGo: viaPort(noGo.port),
        tcpNoMore: viaPort(connectNoMore.port),
        pingWarm,
        pingNoGo: viaPing(noGo.ping, noGo.d, noGoSteps),
        pingAfterStatus: viaPing(warmAfter, d, [], { afterStatus: true }),
        pingRefillAtOnce: viaPing(warmAtOnce, d, []),
        pingCold,
        pingColdFull: viaPing(coldFull, d, coldFullSteps, { fullOuter: true }),
        ssh: viaPort(ssh.port),
        chain: viaPort(chain.port),
        raw: viaPort(d.target.port),
        ...(noCache ? { tcpNoCache: viaPort(noCache.port) } : {}),
      },
      starts,
    );
    const cpu = {
      tcp: await cpuPerStream(viaPort(connect.port), { connect: connect.pid, ...daemons }),
      tcpCold: await cpuPerStream(viaPort(connectCold.port), { connect: connectCold.pid, ...daemons }),
      pingWarm: await cpuPerStream(pingWarm, daemons),
      pingCold: await cpuPerStream(pingCold, daemons),
      tcpNoCache: noCache
        ? await cpuPerStream(viaPort(noCache.port), {
            connect: noCache.pid,
            proxy: noCache.d.proxies[0]!.pid,
            gateway: noCache.d.gateways[0]!.pid,
          })
        : '',
    };
    const counted = (list: Step[]) => list.slice(WARMUP, WARMUP + STREAMS);
    const p50Of = (list: Step[], k: keyof RelayedStream['timings']) =>
      fmt.ms(
        percentile(
          list.slice(WARMUP, WARMUP + STREAMS).map((s) => s.timings[k]),
          50,
        ),
      );
    const opened = connect
      .events()
      .filter((e) => e['event'] === 'opened')
      .slice(WARMUP, WARMUP + STREAMS);
    const inConnect = opened.map((e) => Number(e['setupMs']));
    const sentFirst = opened.filter((e) => Number(e['sentFirst']) > 0).length;
    const noMoreSent = connectNoMore
      .events()
      .filter((e) => e['event'] === 'opened')
      .slice(WARMUP, WARMUP + STREAMS)
      .filter((e) => Number(e['sentFirst']) > 0).length;
    const firstByte = connect
      .events()
      .filter((e) => e['event'] === 'closed' && e['firstByteMs'] !== null)
      .slice(WARMUP, WARMUP + STREAMS)
      .map((e) => Number(e['firstByteMs']));
    const traceDir = process.env['BENCH_SETUP_TRACE'];
    if (traceDir) {
      const closed = connect
        .events()
        .filter((e) => e['event'] === 'closed')
        .slice(WARMUP, WARMUP + STREAMS);
      const tcp: TracedStream[] = r['tcp']!.map((ms, i) => ({
        at: starts['tcp']![i]!,
        ms,
        steps: {
          openMs: Number(opened[i]?.['setupMs']),
          firstByteMs: Number(closed[i]?.['firstByteMs']),
          warm: opened[i]?.['warm'] === true,
          resumed: opened[i]?.['resumed'] === true,
        },
      }));
      const ping: TracedStream[] = r['pingWarm']!.map((ms, i) => {
        const s = warmSteps[WARMUP + i];
        return { at: starts['pingWarm']![i]!, ms, steps: { ...s?.timings, warm: s?.warm } };
      });
      reportSlowStreams(traceDir, { tcp, ping });
    }
    const refs =
      `${pp(r['chain']!)} hand-built chain (socat TLS in socat TLS through sshd/ssh -R, bench/datapath.ts); ` +
      `${pp(r['ssh']!)} ssh -R alone; ${pp(r['raw']!)} raw loopback`;
    return [
      {
        area: 'setup',
        metric: `new stream via infisical-connect tcp, connect → first echoed byte, p50 / p99 (${STREAMS})`,
        ours: pp(r['tcp']!),
        reference:
          `${pp(r['tcpNoGo']!)} through a gateway with hold_inner_sessions = false (relay opened ahead, inner session not held; ` +
          `a second deployment, same rounds, ${noGo.held()} held); ${pp(r['tcpNoMore']!)} held, but the bytes ` +
          `that come after GO wait for the status line (a second connect, bench/connect-without-more-bytes.ts, same ` +
          `rounds; ${noMoreSent} sent bytes before the line); ${pp(r['tcpCold']!)} with --warm-relay 0; ${refs}`,
        note:
          `grant held; every component a process started through its CLI; goal p50 ≤5 ms, p99 ≤20 ms; in the ` +
          `connect process, accept → stream open (inner TLS, gateway's target dial and status) p50 ` +
          `${fmt.ms(percentile(inConnect, 50))}, accept → first byte back ${fmt.ms(percentile(firstByte, 50))}, ${opened.filter((e) => e['warm'] === true).length} of ` +
          `${opened.length} on a relay opened ahead of need, ${opened.filter((e) => e['held'] === true).length} on an inner session held ahead (tcp+go), ${opened.filter((e) => e['resumed'] === true).length} ` +
          `resumed the grant's inner session, ${sentFirst} sent bytes before the gateway's status line; ${cpu.tcp}; with --warm-relay 0: ${cpu.tcpCold}`,
      },
      {
        area: 'setup',
        metric: `new stream in ping mode (client library → proxy, gateway processes), p50 / p99 (${STREAMS})`,
        ours: pp(r['pingWarm']!),
        reference:
          `${pp(r['pingNoGo']!)} through a gateway without ping+go (relay opened ahead, inner session not held; ` +
          `the second deployment, same rounds, ${counted(noGoSteps).filter((s) => s.held).length} held); ` +
          `${pp(r['pingAfterStatus']!)} relay opened ahead, probe sent after the gateway's status line; ` +
          `${pp(r['pingRefillAtOnce']!)} next relay opened as soon as a stream opened (not after its first answer); ` +
          `${pp(r['pingCold']!)} without the relay opened ahead (outer session resumed); ` +
          `${pp(r['pingColdFull']!)} without the relay opened ahead, full outer handshake; ${refs}`,
        note:
          `${counted(warmSteps).filter((s) => s.warm).length} of ${STREAMS} on a relay opened ahead of need, ` +
          `${counted(warmSteps).filter((s) => s.held).length} on an inner session held ahead (ping+go); ` +
          `on the stream's path (held: GO; else the inner TLS) + gateway status p50 ${p50Of(warmSteps, 'gatewayMs')} ` +
          `(without ping+go: ${p50Of(noGoSteps, 'gatewayMs')}); ${cpu.pingWarm}. Without the relay ahead: outer TLS ` +
          `${p50Of(coldSteps, 'proxyMs')} resumed (${p50Of(coldFullSteps, 'proxyMs')} full), proxy status (route + SSH channel) ${p50Of(coldSteps, 'statusMs')}, inner ` +
          `${p50Of(coldSteps, 'gatewayMs')}; ${cpu.pingCold}`,
      },
      ...(noCache
        ? [
            {
              area: 'setup',
              metric: `new stream via infisical-connect tcp, verifier path cache on (reference: off), p50 / p99 (${STREAMS})`,
              ours: pp(r['tcp']!),
              reference: `${pp(r['tcpNoCache']!)} with the path cache off in connect, proxy and gateway (a second deployment, same rounds)`,
              note: `cache hits on: ${await cacheHits(d)}; off: ${await cacheHits(noCache.d)}; on: ${cpu.tcp}; off: ${cpu.tcpNoCache}`,
            },
          ]
        : []),
    ];
  } finally {
    await noCache?.d.close();
    await noGo?.d.close();
    await ssh?.stop();
    await chain?.stop();
    await d.close();
    dir.remove();
  }
}
