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
 *   - references in the same run: raw loopback to the echo target, and OpenSSH `ssh -R` (a private sshd on
 *     127.0.0.1, certificates on both sides, aes128-gcm) forwarding to the same target.
 *
 * Each path: WARMUP streams not counted, then STREAMS (BENCH_SETUP_STREAMS, default 200) one after the other.
 * The client library's own per-step timings (outer TLS, proxy status line, inner TLS + gateway status) are
 * printed beside the ping figures: where the milliseconds go (docs/performance.md, "New-stream setup").
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { CaGrantSource } from '../lib/client/ca-source.js';
import { GatewayConnector } from '../lib/client/connector.js';
import type { RelayedStream } from '../lib/client/dial.js';
import { CaClient } from '../lib/protocol/ca-client.js';
import { keygen, keygenSign, TempDir } from '../test/helpers/openssh.js';
import { startSshd } from '../test/helpers/sshd.js';
import { type Deployment, startDeployment } from '../test/lifecycle/deploy.js';
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

async function measure(setup: Setup): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await setup();
  const out: number[] = [];
  for (let i = 0; i < STREAMS; i++) out.push(await setup());
  return out;
}

/** OpenSSH: sshd on 127.0.0.1 with a private config and `ssh -R 0:127.0.0.1:<target>`; sshd's forwarded port. */
async function startSshReference(dir: TempDir, targetPort: number): Promise<{ port: number; stop(): Promise<void> }> {
  const userCa = keygen(dir, 'user_ca');
  const hostCa = keygen(dir, 'host_ca');
  const host = keygen(dir, 'host');
  const hostCert = keygenSign(hostCa, host, { id: 'proxy', principals: ['127.0.0.1'], host: true });
  const gw = keygen(dir, 'gw');
  const gwCert = keygenSign(userCa, gw, {
    id: 'gw',
    principals: ['gw1'],
    options: ['clear', 'permit-port-forwarding'],
  });
  const sshd = await startSshd({
    dir,
    hostKeyPath: host.path,
    hostCertPath: hostCert.path,
    trustedUserCaKeysPath: userCa.pubPath,
    principals: ['gw1'],
    extra: ['AllowTcpForwarding yes'],
  });
  const kh = dir.write('known_hosts', `@cert-authority [127.0.0.1]:* ${hostCa.publicLine}\n`);
  const fwd: ChildProcess = spawn(
    'ssh',
    [
      ...['-F', '/dev/null', '-o', `UserKnownHostsFile=${kh}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'],
      ...['-o', 'Ciphers=aes128-gcm@openssh.com', '-i', gw.path, '-o', `CertificateFile=${gwCert.path}`],
      ...['-p', String(sshd.port), '-o', 'ExitOnForwardFailure=yes', '-N', '-R', `0:127.0.0.1:${targetPort}`],
      `${sshd.user}@127.0.0.1`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let err = '';
    fwd.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /Allocated port (\d+) for remote forward/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    fwd.once('exit', () => reject(new Error(`ssh -R exited: ${err}`)));
  });
  return {
    port,
    stop: async () => {
      fwd.kill('SIGTERM');
      await sshd.stop();
    },
  };
}

/** Ping mode from this process, against the deployment's proxy and gateway processes. */
function pingConnector(d: Deployment): GatewayConnector {
  const source = new CaGrantSource({
    ca: new CaClient({ url: d.ca.url, fingerprint: d.ca.fingerprint }),
    clientId: d.app.clientId,
    clientSecret: readFileSync(d.app.secretFile, 'utf8').trim(),
  });
  return new GatewayConnector({ source, orgId: d.org, gatewayId: d.gateways[0]!.gatewayId });
}

function viaPing(connector: GatewayConnector, d: Deployment, steps: RelayedStream['timings'][]): Setup {
  const spec = { host: d.target.host, port: d.target.port };
  return async () => {
    const t0 = performance.now();
    const stream = await connector.open(spec, 'ping');
    const socket = stream.socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('data', () => resolve());
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('ping stream closed before its echo')));
      socket.write(Buffer.from([0x2a]));
    });
    const ms = performance.now() - t0;
    socket.destroy();
    steps.push(stream.timings);
    return ms;
  };
}

const pp = (v: number[]) => `${fmt.ms(percentile(v, 50))} / ${fmt.ms(percentile(v, 99))}`;

export async function benchSetup(): Promise<BenchRow[]> {
  const dir = new TempDir('bench-setup-');
  const d = await startDeployment({ proxies: 1, gateways: 1, logLevel: 'warn' });
  let ssh: { port: number; stop(): Promise<void> } | undefined;
  try {
    const connect = await d.connect();
    ssh = await startSshReference(dir, d.target.port);
    const connector = pingConnector(d);
    await connector.grant({ host: d.target.host, port: d.target.port }, 'ping');
    const steps: RelayedStream['timings'][] = [];
    const r = {
      tcp: await measure(viaPort(connect.port)),
      ping: await measure(viaPing(connector, d, steps)),
      ssh: await measure(viaPort(ssh.port)),
      raw: await measure(viaPort(d.target.port)),
    };
    const counted = steps.slice(WARMUP);
    const stepP50 = (k: keyof RelayedStream['timings']) =>
      fmt.ms(
        percentile(
          counted.map((s) => s[k]),
          50,
        ),
      );
    const refs = `${pp(r.ssh)} ssh -R; ${pp(r.raw)} raw loopback`;
    return [
      {
        area: 'setup',
        metric: `new stream via infisical-connect tcp, connect → first echoed byte, p50 / p99 (${STREAMS})`,
        ours: pp(r.tcp),
        reference: refs,
        note: 'grant held; CA, proxy, gateway, connect: processes started through their CLIs; goal p50 ≤5 ms, p99 ≤20 ms',
      },
      {
        area: 'setup',
        metric: `new stream in ping mode (client library → proxy, gateway processes), p50 / p99 (${STREAMS})`,
        ours: pp(r.ping),
        reference: refs,
        note: `steps p50: outer TLS ${stepP50('proxyMs')}, proxy status (route + SSH channel) ${stepP50('statusMs')}, inner TLS + gateway status ${stepP50('gatewayMs')}`,
      },
    ];
  } finally {
    await ssh?.stop();
    await d.close();
    dir.remove();
  }
}
