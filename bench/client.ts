/**
 * The platform's whole path: client → outer TLS → proxy → SSH tunnel → gateway → inner TLS end to end →
 * target. Bulk throughput (1 and 8 streams) and new-stream setup latency, each beside the same bytes through
 * an OpenSSH `ssh -R` tunnel (sshd + ssh started here on 127.0.0.1) and raw loopback TCP, in the same run.
 *
 * The installation (CA, proxy, gateway: test/client/installation.ts) runs in a worker thread, the client and
 * the target in the main thread, so the two sides get a core each, as sshd and ssh do.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { CaGrantSource } from '../lib/client/ca-source.js';
import { GatewayConnector } from '../lib/client/connector.js';
import { CaClient } from '../lib/protocol/ca-client.js';
import { GATEWAY, ORG, startInstallation } from '../test/client/installation.js';
import { keygen, keygenSign, TempDir } from '../test/helpers/openssh.js';
import { startSshd } from '../test/helpers/sshd.js';
import { type BenchRow, fmt, percentile } from './table.js';

const ROLE = 'client-bench-installation';
const ONE_STREAM_BYTES = 128 * 2 ** 20;
const EIGHT_STREAM_BYTES = 16 * 2 ** 20; // per stream
const SETUPS = 150;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

/** Target: reads an 8-byte length, then that many bytes, then answers one byte. The same for every path. */
async function startTarget(): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    let want = -1n;
    let header = Buffer.alloc(0);
    let got = 0n;
    s.on('data', (d: Buffer) => {
      let chunk = d;
      if (want < 0n) {
        header = Buffer.concat([header, chunk]);
        if (header.length < 8) return;
        want = header.readBigUInt64BE(0);
        chunk = header.subarray(8);
      }
      got += BigInt(chunk.length);
      if (got >= want) {
        s.write(Buffer.from([1]));
        want = -1n;
        header = Buffer.alloc(0);
        got = 0n;
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** Sends `bytes` (length-prefixed) and resolves when the target has acknowledged them all. */
async function transfer(s: Duplex, bytes: number): Promise<void> {
  const ack = new Promise<void>((resolve, reject) => {
    s.once('data', () => resolve());
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before the acknowledgement')));
  });
  const head = Buffer.alloc(8);
  head.writeBigUInt64BE(BigInt(bytes));
  // One write for a small transfer: a split write would measure Nagle and delayed ACKs, not the path.
  if (bytes <= CHUNK.length) {
    s.write(Buffer.concat([head, CHUNK.subarray(0, bytes)]));
    return ack;
  }
  s.write(head);
  for (let sent = 0; sent < bytes; sent += CHUNK.length) {
    const part = bytes - sent >= CHUNK.length ? CHUNK : CHUNK.subarray(0, bytes - sent);
    if (!s.write(part)) await once(s, 'drain');
  }
  await ack;
}

type Opener = () => Promise<Duplex>;

async function throughput(open: Opener, streams: number, perStream: number): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: streams }, open));
  const t0 = performance.now();
  await Promise.all(sockets.map((s) => transfer(s, perStream)));
  const sec = (performance.now() - t0) / 1000;
  for (const s of sockets) s.destroy();
  return (streams * perStream) / 2 ** 20 / sec;
}

/** Time from "open" to the first acknowledged byte, per new stream. */
async function setupLatency(open: Opener, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const s = await open();
    await transfer(s, 1);
    out.push(performance.now() - t0);
    s.destroy();
  }
  return out;
}

const tcpOpener =
  (port: number): Opener =>
  async () => {
    const s = net.connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.setNoDelay(true);
    return s;
  };

/** OpenSSH: sshd on 127.0.0.1 and `ssh -R 0:127.0.0.1:<target>`; returns the port sshd listens on. */
export async function startSshReference(
  dir: TempDir,
  targetPort: number,
): Promise<{ port: number; stop(): Promise<void> }> {
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

interface InstallationInfo {
  caUrl: string;
  fingerprint: string;
  clientId: string;
  clientSecret: string;
}

/** Worker side: the installation, until the main thread says stop. */
async function runInstallationWorker(targetPort: number): Promise<void> {
  const inst = await startInstallation({
    proxies: 1,
    policyTargets: [`127.0.0.1:${targetPort}`],
    modes: ['tcp'],
    allowPorts: [targetPort],
  });
  const info: InstallationInfo = {
    caUrl: inst.caUrl,
    fingerprint: inst.fingerprint,
    clientId: inst.clientId,
    clientSecret: inst.clientSecret,
  };
  parentPort!.postMessage(info);
  await once(parentPort!, 'message');
  await inst.close();
  parentPort!.postMessage('stopped');
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === ROLE) {
  await runInstallationWorker((workerData as { targetPort: number }).targetPort);
}

export async function benchClient(): Promise<BenchRow[]> {
  const dir = new TempDir('bench-client-');
  const target = await startTarget();
  const targetPort = (target.address() as AddressInfo).port;
  const worker = new Worker(new URL(import.meta.url), { workerData: { role: ROLE, targetPort } });
  let ssh: { port: number; stop(): Promise<void> } | undefined;
  try {
    const [info] = (await once(worker, 'message')) as [InstallationInfo];
    const source = new CaGrantSource({
      ca: new CaClient({ url: info.caUrl, fingerprint: info.fingerprint }),
      clientId: info.clientId,
      clientSecret: info.clientSecret,
    });
    const connector = new GatewayConnector({ source, orgId: ORG, gatewayId: GATEWAY });
    const spec = { host: '127.0.0.1', port: targetPort };
    const grantMs: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      connector.cache.invalidate(await connector.grant(spec, 'tcp'));
      grantMs.push(performance.now() - t0);
    }
    const ours: Opener = async () => {
      const s = (await connector.open(spec, 'tcp')).socket;
      s.setNoDelay(true);
      return s;
    };
    ssh = await startSshReference(dir, targetPort);
    const paths: [string, Opener][] = [
      ['ours', ours],
      ['ssh', tcpOpener(ssh.port)],
      ['tcp', tcpOpener(targetPort)],
    ];
    const r: Record<string, { one: number; eight: number; setup: number[] }> = {};
    for (const [name, open] of paths) {
      await throughput(open, 1, 4 * 2 ** 20); // warm-up
      r[name] = {
        one: await throughput(open, 1, ONE_STREAM_BYTES),
        eight: await throughput(open, 8, EIGHT_STREAM_BYTES),
        setup: await setupLatency(open, SETUPS),
      };
    }
    const o = r['ours']!;
    const s = r['ssh']!;
    const t = r['tcp']!;
    const pp = (v: number[]) => `${fmt.ms(percentile(v, 50))} / ${fmt.ms(percentile(v, 99))}`;
    const path = 'client → TLS → proxy → SSH → gateway → TCP, inner TLS end to end';
    return [
      {
        area: 'client',
        metric: `bulk, 1 stream, ${ONE_STREAM_BYTES / 2 ** 20} MiB`,
        ours: fmt.mibs(o.one),
        reference: `${fmt.mibs(s.one)} ssh -R; ${fmt.mibs(t.one)} tcp`,
        note: `${path}; ssh aes128-gcm`,
      },
      {
        area: 'client',
        metric: `bulk, 8 streams × ${EIGHT_STREAM_BYTES / 2 ** 20} MiB`,
        ours: fmt.mibs(o.eight),
        reference: `${fmt.mibs(s.eight)} ssh -R; ${fmt.mibs(t.eight)} tcp`,
        note: 'aggregate; ours: one proxy, one tunnel',
      },
      {
        area: 'client',
        metric: `new stream to first ack, p50 / p99 (${SETUPS})`,
        ours: pp(o.setup),
        reference: `${pp(s.setup)} ssh -R; ${pp(t.setup)} tcp`,
        note: 'ours: cached grant, outer + inner TLS 1.3 handshakes (ECDSA P-256), SSH channel open',
      },
      {
        area: 'client',
        metric: 'grant from the CA (key, 2 CSRs, HTTPS, policy, 2 certs), p50',
        ours: fmt.ms(percentile(grantMs, 50)),
        note: 'first stream only; GrantCache reuses it until 30 s before expiry',
      },
    ];
  } finally {
    await ssh?.stop();
    worker.postMessage('stop');
    await Promise.race([once(worker, 'message'), new Promise((r) => setTimeout(r, 3000))]);
    await worker.terminate();
    target.close();
    dir.remove();
  }
}
