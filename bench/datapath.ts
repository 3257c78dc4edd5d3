/**
 * Bulk throughput of one stream through the whole data path, beside a hand-built chain of the same layering
 * (issue 13), all in one run on the same machine:
 *
 *   ours    sender → `infisical-connect tcp` → outer TLS → proxy → SSH tunnel → gateway → inner TLS ends → sink
 *           (CA, proxy, gateway and connect are real processes started through their CLIs: test/lifecycle)
 *   chain   sender → socat (inner TLS client) → socat (outer TLS client) → socat (outer TLS server) → sshd ⇄
 *           `ssh -R` → socat (inner TLS server) → sink: two TLS layers and one SSH layer, as ours
 *   ssh -R  sender → sshd ⇄ `ssh -R` → sink (one layer)
 *   tcp     sender → sink (raw loopback)
 *
 * Every tool runs with the distribution's default ciphers (OpenSSL and OpenSSH pick; the negotiated ones are
 * printed) and fresh keys. One connection per path carries a warm-up and then `ROUNDS` transfers of `MIB` MiB
 * (BENCH_DATAPATH_MIB, default 256) each way; the paths take turns round by round, so that a burst of load
 * from other work hits them alike. Upload: the sink reads an 8-byte length, SHA-256s that many bytes and
 * answers with the digest, timed from the first byte sent to the digest received. Download: the sink sends
 * the bytes asked for, and the sender SHA-256s them. A transfer counts only if every byte arrived unaltered.
 * Beside each figure, the CPU seconds per GiB that the path's processes used (from /proc).
 *
 * BENCH_DATAPATH_PATHS=ours (a comma list of ours, chain, ssh, tcp) measures only those, for quick comparisons.
 * BENCH_DATAPATH_PROFILE=DIR runs every daemon under V8's CPU profiler (bench/cpu-profile.ts: one .cpuprofile
 * per process in DIR, written when it exits; docs/performance.md reads them).
 * BENCH_DATAPATH_NODE_OPTIONS adds Node/V8 flags to the daemons' NODE_OPTIONS (not the bench's own), to weigh one.
 * BENCH_DATAPATH_LOGS=DIR writes each of our daemons' whole output there (DIR/<name>.log) at the end.
 * BENCH_DATAPATH_LOAD=N runs N busy-loop processes for the whole run (killed at its end; the rows say so): a
 * machine busy with other work, made reproducible, where ours and the chain compete for the cores with it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { freePort, keygen, keygenSign, TempDir } from '../test/helpers/openssh.js';
import { startSshd } from '../test/helpers/sshd.js';
import { type Deployment, startDeployment } from '../test/lifecycle/deploy.js';
import { type BenchRow, fmt, percentile } from './table.js';

const MIB = Math.max(1, Number(process.env['BENCH_DATAPATH_MIB'] ?? 256));
const ROUNDS = 3;
const CHUNK = 64 * 1024;
const LOAD = Math.max(0, Math.floor(Number(process.env['BENCH_DATAPATH_LOAD'] ?? 0)) || 0);

/** N processes that spin on a core each until killed: synthetic load from "other work" (BENCH_DATAPATH_LOAD). */
function startLoad(n: number): ChildProcess[] {
  return Array.from({ length: n }, () =>
    spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore', env: { PATH: process.env['PATH'] ?? '' } }),
  );
}

async function stopLoad(load: ChildProcess[]): Promise<void> {
  for (const c of load) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    c.kill('SIGKILL');
    await once(c, 'exit');
  }
}

/** The load average (1, 5, 15 min) now, from /proc/loadavg. */
function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'latin1').split(' ').slice(0, 3).join(' ');
}

/**
 * CPU seconds (user + system) used so far by these processes and their live descendants (socat and sshd fork
 * one per connection), from /proc: what a path costs, beside what it achieves on a machine shared with others.
 */
function cpuSeconds(pids: number[]): number {
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  const seen = new Set<number>();
  const visit = (pid: number): void => {
    if (seen.has(pid)) return;
    seen.add(pid);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / tick; // utime, stime (fields 14 and 15)
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        const children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').trim();
        for (const c of children ? children.split(' ') : []) visit(Number(c));
      }
    } catch {
      // gone meanwhile
    }
  };
  for (const pid of pids) visit(pid);
  return total;
}

const SEND_BACK = 1n << 63n;

/**
 * Sink: per transfer an 8-byte length, then that many bytes, SHA-256d; answers with the 32-byte digest. A
 * length with the top bit set asks for that many bytes of `source` instead (the download direction).
 */
async function startSink(source: Buffer): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    let want = -1;
    let header = Buffer.alloc(0);
    let got = 0;
    let hash = createHash('sha256');
    const sendBack = async (n: number) => {
      for (let off = 0; off < n && !s.destroyed; off += CHUNK) {
        if (!s.write(source.subarray(off, Math.min(n, off + CHUNK)))) await once(s, 'drain').catch(() => undefined);
      }
    };
    s.on('data', (d: Buffer) => {
      let chunk = d;
      while (chunk.length > 0) {
        if (want < 0) {
          header = Buffer.concat([header, chunk]);
          if (header.length < 8) return;
          const head = header.readBigUInt64BE(0);
          chunk = header.subarray(8);
          header = Buffer.alloc(0);
          if (head & SEND_BACK) void sendBack(Number(head & ~SEND_BACK));
          else want = Number(head);
          continue;
        }
        const take = Math.min(chunk.length, want - got);
        hash.update(take === chunk.length ? chunk : chunk.subarray(0, take));
        got += take;
        chunk = chunk.subarray(take);
        if (got === want) {
          s.write(hash.digest());
          hash = createHash('sha256');
          want = -1;
          got = 0;
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** One connection to the sink through a path, reused for every transfer of that path. */
class Sender {
  readonly #socket: net.Socket;
  readonly #digests: Buffer[] = [];
  #waiting: ((d: Buffer) => void) | undefined;
  #pending = Buffer.alloc(0);
  #failure: Error | undefined;
  /** A download in progress: what is still to come and the hash of what came. */
  #download: { remaining: number; hash: ReturnType<typeof createHash> } | undefined;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      const down = this.#download;
      if (down) {
        down.hash.update(d);
        down.remaining -= d.length;
        if (down.remaining <= 0) {
          this.#download = undefined;
          this.#waiting?.(down.remaining === 0 ? down.hash.digest() : Buffer.alloc(0));
        }
        return;
      }
      this.#pending = Buffer.concat([this.#pending, d]);
      while (this.#pending.length >= 32) {
        this.#digests.push(this.#pending.subarray(0, 32));
        this.#pending = this.#pending.subarray(32);
      }
      const next = this.#waiting && this.#digests.shift();
      if (next) this.#waiting!(next);
    });
    const fail = (err: Error) => {
      this.#failure ??= err;
      this.#waiting?.(Buffer.alloc(0));
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('the path closed the stream')));
  }

  /** Asks the sink for the first `bytes` of its source; MiB/s once they all came back matching `sha256`. */
  async download(bytes: number, sha256: Buffer): Promise<number> {
    const digest = new Promise<Buffer>((resolve) => {
      this.#waiting = resolve;
    });
    this.#download = { remaining: bytes, hash: createHash('sha256') };
    const head = Buffer.alloc(8);
    head.writeBigUInt64BE(BigInt(bytes) | SEND_BACK);
    const t0 = performance.now();
    this.#socket.write(head);
    const got = await digest;
    const sec = (performance.now() - t0) / 1000;
    this.#waiting = undefined;
    if (this.#failure) throw this.#failure;
    if (!got.equals(sha256)) throw new Error('different bytes came back from the sink (sha256 mismatch)');
    return bytes / 2 ** 20 / sec;
  }

  static async open(port: number): Promise<Sender> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.setNoDelay(true);
    return new Sender(socket);
  }

  /** Sends `data` and resolves with MiB/s once the sink's digest matches `sha256`; throws on any mismatch. */
  async transfer(data: Buffer, sha256: Buffer): Promise<number> {
    const digest = new Promise<Buffer>((resolve) => {
      const ready = this.#digests.shift();
      if (ready) resolve(ready);
      else this.#waiting = resolve;
    });
    const head = Buffer.alloc(8);
    head.writeBigUInt64BE(BigInt(data.length));
    const t0 = performance.now();
    this.#socket.write(head);
    for (let off = 0; off < data.length && !this.#failure; off += CHUNK) {
      if (!this.#socket.write(data.subarray(off, off + CHUNK))) {
        await Promise.race([once(this.#socket, 'drain'), digest]);
      }
    }
    const got = await digest;
    const sec = (performance.now() - t0) / 1000;
    this.#waiting = undefined;
    if (this.#failure) throw this.#failure;
    if (!got.equals(sha256)) throw new Error('the sink received different bytes (sha256 mismatch)');
    return data.length / 2 ** 20 / sec;
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** A spawned helper process (ssh, socat), with its stderr kept for errors and for what it negotiated. */
interface Tool {
  child: ChildProcess;
  pid: number;
  err(): string;
}

function tool(cmd: string, args: string[]): Tool {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    // Keep the start (negotiation, errors), not every per-connection line of a long run.
    if (err.length < 64 * 1024) err += d;
  });
  child.on('error', (e) => {
    err += `\n${e.message}`;
  });
  return { child, pid: child.pid ?? 0, err: () => err };
}

/** Resolves with the first match of `re` in the tool's stderr; rejects if it exits first or after 20 s. */
async function waitOutput(t: Tool, re: RegExp, what: string): Promise<RegExpExecArray> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const m = re.exec(t.err());
    if (m) return m;
    if (t.child.exitCode !== null || t.child.signalCode !== null || Date.now() > deadline) {
      throw new Error(`${what}: ${t.child.exitCode !== null ? 'exited' : 'timed out'}: ${t.err().slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stopTool(t: Tool): Promise<void> {
  if (t.child.exitCode !== null || t.child.signalCode !== null) return;
  t.child.kill('SIGTERM');
  await Promise.race([once(t.child, 'exit'), new Promise((r) => setTimeout(r, 3000))]);
}

/** sshd on 127.0.0.1 (private config, fresh keys) and `ssh -R 0:127.0.0.1:<to>` with default ciphers. */
async function startSshForward(
  dir: TempDir,
  to: number,
): Promise<{ port: number; cipher: string; pids: number[]; stop(): Promise<void> }> {
  const tag = `fwd-${to}`;
  const userCa = keygen(dir, `${tag}-user_ca`);
  const hostCa = keygen(dir, `${tag}-host_ca`);
  const host = keygen(dir, `${tag}-host`);
  const hostCert = keygenSign(hostCa, host, { id: 'proxy', principals: ['127.0.0.1'], host: true });
  const gw = keygen(dir, `${tag}-gw`);
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
  const kh = dir.write(`${tag}-known_hosts`, `@cert-authority [127.0.0.1]:* ${hostCa.publicLine}\n`);
  const ssh = tool('ssh', [
    ...['-v', '-F', '/dev/null', '-o', `UserKnownHostsFile=${kh}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'],
    ...['-i', gw.path, '-o', `CertificateFile=${gwCert.path}`, '-p', String(sshd.port)],
    ...['-o', 'ExitOnForwardFailure=yes', '-N', '-R', `0:127.0.0.1:${to}`, `${sshd.user}@127.0.0.1`],
  ]);
  try {
    const port = Number((await waitOutput(ssh, /Allocated port (\d+) for remote forward/, 'ssh -R'))[1]);
    const cipher = /kex: client->server cipher: (\S+)/.exec(ssh.err())?.[1] ?? 'default';
    return {
      port,
      cipher,
      pids: [ssh.pid, sshd.pid],
      stop: async () => {
        await stopTool(ssh);
        await sshd.stop();
      },
    };
  } catch (err) {
    await stopTool(ssh);
    await sshd.stop();
    throw err;
  }
}

/** A self-signed P-256 certificate for `cn` (as our PKI's ECDSA P-256 leaves), made by the openssl CLI. */
function selfSigned(dir: TempDir, cn: string): { cert: string; key: string } {
  const cert = dir.file(`${cn}.crt`);
  const key = dir.file(`${cn}.key`);
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'],
      ...['-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`, '-keyout', key, '-out', cert],
    ],
    { stdio: 'pipe' },
  );
  return { cert, key };
}

/** `socat -d -d TCP-LISTEN|OPENSSL-LISTEN → …` on a fresh port; resolves once it listens. */
async function socat(listen: (port: number) => string, to: string): Promise<{ port: number; t: Tool }> {
  const port = await freePort();
  const t = tool('socat', ['-d', '-d', listen(port), to]);
  await waitOutput(t, /listening on/, `socat ${listen(port)}`);
  return { port, t };
}

/**
 * The hand-built chain: inner TLS client → outer TLS client → outer TLS server → `ssh -R` → inner TLS server
 * → `to`. Each TLS client checks the server's certificate and name. Returns the port the sender connects to.
 */
export async function startChain(
  dir: TempDir,
  to: number,
): Promise<{ port: number; cipher: string; pids: number[]; tls(): string; stop(): Promise<void> }> {
  const inner = selfSigned(dir, 'inner.chain');
  const outer = selfSigned(dir, 'outer.chain');
  const tools: Tool[] = [];
  let ssh: Awaited<ReturnType<typeof startSshForward>> | undefined;
  const stop = async () => {
    for (const t of tools.reverse()) await stopTool(t);
    await ssh?.stop();
  };
  try {
    const server = (c: { cert: string; key: string }) => (p: number) =>
      `OPENSSL-LISTEN:${p},bind=127.0.0.1,reuseaddr,fork,cert=${c.cert},key=${c.key},verify=0`;
    const client = (c: { cert: string }, cn: string, p: number) =>
      `OPENSSL:127.0.0.1:${p},cafile=${c.cert},commonname=${cn}`;
    const plain = (p: number) => `TCP-LISTEN:${p},bind=127.0.0.1,reuseaddr,fork`;
    const innerServer = await socat(server(inner), `TCP:127.0.0.1:${to}`);
    tools.push(innerServer.t);
    ssh = await startSshForward(dir, innerServer.port);
    const outerServer = await socat(server(outer), `TCP:127.0.0.1:${ssh.port}`);
    tools.push(outerServer.t);
    const outerClient = await socat(plain, client(outer, 'outer.chain', outerServer.port));
    tools.push(outerClient.t);
    const innerClient = await socat(plain, client(inner, 'inner.chain', outerClient.port));
    tools.push(innerClient.t);
    return {
      port: innerClient.port,
      cipher: ssh.cipher,
      pids: [...tools.map((t) => t.pid), ...ssh.pids],
      // socat -d -d names the TLS cipher suite once a connection is up (after the warm-up).
      tls: () => /SSL connection using (\S+)/.exec(innerServer.t.err())?.[1] ?? 'OpenSSL default',
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Runs the deployment, each daemon under bench/cpu-profile.ts when BENCH_DATAPATH_PROFILE names a folder. */
async function deploy(sinkAddress: string, sinkPort: number): Promise<{ d: Deployment; port: number }> {
  const profile = process.env['BENCH_DATAPATH_PROFILE'];
  const saved = { options: process.env['NODE_OPTIONS'], dir: process.env['BENCH_CPU_PROFILE_DIR'] };
  // Node or V8 flags for the daemons alone (not this process), to weigh one: e.g. --max-semi-space-size=64.
  const extra = process.env['BENCH_DATAPATH_NODE_OPTIONS'];
  if (extra) process.env['NODE_OPTIONS'] = `${saved.options ?? ''} ${extra}`.trim();
  if (profile) {
    const preload = new URL('./cpu-profile.js', import.meta.url).href;
    process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} --import=${preload}`.trim();
    process.env['BENCH_CPU_PROFILE_DIR'] = profile;
  }
  try {
    const d = await startDeployment({
      proxies: 1,
      gateways: 1,
      allowPorts: [sinkPort],
      policyTargets: [sinkAddress],
      logLevel: 'warn',
    });
    try {
      const c = await d.connect({ target: sinkAddress });
      return { d, port: c.port };
    } catch (err) {
      await d.close();
      throw err;
    }
  } finally {
    for (const [k, v] of [
      ['NODE_OPTIONS', saved.options],
      ['BENCH_CPU_PROFILE_DIR', saved.dir],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const summary = (v: number[]) =>
  `${fmt.mibs(percentile(v, 50))} (${Math.min(...v).toFixed(0)}–${Math.max(...v).toFixed(0)})`;

export async function benchDatapath(): Promise<BenchRow[]> {
  const dir = new TempDir('bench-datapath-');
  const data = randomBytes(MIB * 2 ** 20);
  const sink = await startSink(data);
  const sinkPort = (sink.address() as AddressInfo).port;
  const sinkAddress = `127.0.0.1:${sinkPort}`;
  const sha256 = createHash('sha256').update(data).digest();
  const warm = data.subarray(0, Math.min(data.length, 16 * 2 ** 20));
  const warmSha = createHash('sha256').update(warm).digest();
  let ours: Awaited<ReturnType<typeof deploy>> | undefined;
  let ssh: Awaited<ReturnType<typeof startSshForward>> | undefined;
  let chain: Awaited<ReturnType<typeof startChain>> | undefined;
  const senders: Sender[] = [];
  let load: ChildProcess[] = [];
  try {
    ours = await deploy(sinkAddress, sinkPort);
    ssh = await startSshForward(dir, sinkPort);
    chain = await startChain(dir, sinkPort);
    const ourPids = () => ours!.d.daemons().flatMap((d) => (d.running && d.program !== 'ca' && d.pid ? [d.pid] : []));
    const paths: [string, number, () => number[]][] = [
      ['ours', ours.port, ourPids],
      ['chain', chain.port, () => chain!.pids],
      ['ssh', ssh.port, () => ssh!.pids],
      ['tcp', sinkPort, () => []],
    ];
    // BENCH_DATAPATH_PATHS=ours,tcp narrows the run (profiling, quick comparisons); the table needs all four.
    const only = process.env['BENCH_DATAPATH_PATHS']?.split(',');
    const open: [string, Sender, () => number[]][] = [];
    for (const [name, port, pids] of paths) {
      if (only && !only.includes(name)) continue;
      const s = await Sender.open(port);
      senders.push(s);
      open.push([name, s, pids]);
      await s.transfer(warm, warmSha);
      await s.download(warm.length, warmSha);
    }
    // The synthetic load starts after the set-up (deployment, chain, warm-ups), for the measured rounds only.
    const loadBefore = loadAverage();
    load = startLoad(LOAD);
    // Per path and direction: MiB/s and CPU s/GiB of the path's processes; ours per daemon too.
    const mibs: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    const daemons = ours.d.daemons().filter((d) => d.running && d.program !== 'ca' && d.pid);
    const perDaemon: Record<string, number[]> = {};
    const push = (r: Record<string, number[]>, k: string, v: number) => {
      r[k] ??= [];
      r[k].push(v);
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const dir of ['up', 'down'] as const) {
        for (const [name, s, pids] of open) {
          const before = cpuSeconds(pids());
          const each = daemons.map((d) => cpuSeconds([d.pid!]));
          push(
            mibs,
            `${name}:${dir}`,
            dir === 'up' ? await s.transfer(data, sha256) : await s.download(data.length, sha256),
          );
          push(cpu, `${name}:${dir}`, ((cpuSeconds(pids()) - before) / MIB) * 1024);
          if (name !== 'ours') continue;
          for (const [i, d] of daemons.entries()) {
            push(perDaemon, `${d.program}:${dir}`, ((cpuSeconds([d.pid!]) - each[i]!) / MIB) * 1024);
          }
        }
      }
    }
    await stopLoad(load);
    const conditions =
      (LOAD > 0 ? `synthetic load: ${LOAD} busy-loop process${LOAD > 1 ? 'es' : ''} (BENCH_DATAPATH_LOAD); ` : '') +
      `load average ${loadBefore} → ${loadAverage()}`;
    const cpuPerGiB = (k: string) => `${percentile(cpu[k]!, 50).toFixed(1)} CPU s/GiB`;
    const split = (dir: string) =>
      daemons.map((d) => `${d.program} ${percentile(perDaemon[`${d.program}:${dir}`]!, 50).toFixed(1)}`).join(', ');
    if (only) {
      const line = (k: string) => `${k} ${summary(mibs[k]!)}, ${cpuPerGiB(k)}`;
      return Object.keys(mibs).map((k) => ({
        area: 'datapath',
        metric: `${k} (${MIB} MiB × ${ROUNDS})`,
        ours: line(k),
        // With ours and the chain both measured, their ratio of the same run (quick runs under BENCH_DATAPATH_LOAD).
        reference:
          k.startsWith('ours:') && mibs[`chain:${k.slice(5)}`]
            ? `ours/chain ${(percentile(mibs[k]!, 50) / percentile(mibs[`chain:${k.slice(5)}`]!, 50)).toFixed(2)}×`
            : '',
        note: `${k.startsWith('ours') ? `${split(k.split(':')[1]!)}; ` : ''}${conditions}`,
      }));
    }
    const tlsSuite = chain.tls();
    const row = (dir: 'up' | 'down', what: string): BenchRow => {
      const o = mibs[`ours:${dir}`]!;
      const c = mibs[`chain:${dir}`]!;
      return {
        area: 'datapath',
        metric: `bulk ${what}, 1 stream, ${MIB} MiB × ${ROUNDS}, median (range)`,
        ours: summary(o),
        reference: `${summary(c)} hand-built chain → ours/chain ${(percentile(o, 50) / percentile(c, 50)).toFixed(2)}×`,
        note:
          `CPU of the path's processes: ours ${cpuPerGiB(`ours:${dir}`)} (${split(dir)}), ` +
          `chain ${cpuPerGiB(`chain:${dir}`)}; goal ≥1.2×; ${conditions}`,
      };
    };
    const refs = (dir: 'up' | 'down') =>
      `${summary(mibs[`ssh:${dir}`]!)} ssh -R alone (${cpuPerGiB(`ssh:${dir}`)}); ${summary(mibs[`tcp:${dir}`]!)} raw loopback`;
    return [
      row('up', 'upload (platform → target)'),
      row('down', 'download (target → platform)'),
      {
        area: 'datapath',
        metric: 'bulk, references: upload; download',
        ours: '-',
        reference: `${refs('up')}; ${refs('down')}`,
        note:
          'ours: infisical-connect tcp → outer TLS → proxy → SSH → gateway, inner TLS end to end, every daemon ' +
          `its CLI; chain: socat TLS in socat TLS → sshd/ssh -R (${chain.cipher}) → socat TLS (${tlsSuite}); ` +
          'one connection per path, paths in turn each round; the sink checks sha256 both ways',
      },
    ];
  } finally {
    await stopLoad(load);
    for (const s of senders) s.close();
    await chain?.stop();
    await ssh?.stop();
    // BENCH_DATAPATH_LOGS=DIR keeps each daemon's whole output. NODE_OPTIONS refuses --trace-gc: set it from a
    // preload (--import=FILE in BENCH_DATAPATH_NODE_OPTIONS, calling v8.setFlagsFromString after a few seconds, so
    // that the one-shot CLI calls whose JSON the deployment parses print no trace)
    const logs = process.env['BENCH_DATAPATH_LOGS'];
    if (logs && ours)
      for (const x of ours.d.daemons()) writeFileSync(`${logs}/${x.name.replace(/[^\w.-]+/g, '_')}.log`, x.log());
    await ours?.d.close();
    sink.close();
    dir.remove();
  }
}
