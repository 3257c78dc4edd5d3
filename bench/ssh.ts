/**
 * SSH with certificates: handshake + certificate authentication latency and the throughput of one forwarded
 * channel, for our patched ssh2 (lib/sshwire on both ends) beside OpenSSH (ssh ↔ sshd) on the same machine.
 */
import { spawn } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { connectWithCertificate } from '../lib/sshwire/client.js';
import { createCertServer, listen } from '../lib/sshwire/server.js';
import type { Connection, ServerChannel } from '../lib/sshwire/ssh2.js';
import { keygen, keygenSign, TempDir } from '../test/helpers/openssh.js';
import { authenticateUser } from '../test/helpers/ssh-auth.js';
import { startSshd } from '../test/helpers/sshd.js';
import { type BenchRow, fmt, percentile } from './table.js';

const HANDSHAKES = 20;
const STREAM_BYTES = 256 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

/** Writes STREAM_BYTES into `out` with backpressure. */
async function pump(out: NodeJS.WritableStream): Promise<void> {
  for (let sent = 0; sent < STREAM_BYTES; sent += CHUNK.length) {
    if (!out.write(CHUNK)) await new Promise((r) => out.once('drain', r));
  }
  out.end();
}

/** Byte counter of the receiving end; `timeStream` arms it for one run. */
type Sink = { onData?: (n: number) => void };

/** Best MiB/s over `runs` runs: `start` sends STREAM_BYTES, the far end reports into `sink`. */
async function timeStream(sink: Sink, start: () => void, runs = 2): Promise<number> {
  let best = 0;
  for (let i = 0; i < runs; i++) {
    const mibs = await new Promise<number>((resolve) => {
      let got = 0;
      const t0 = process.hrtime.bigint();
      sink.onData = (n) => {
        got += n;
        if (got >= STREAM_BYTES) resolve(STREAM_BYTES / 2 ** 20 / (Number(process.hrtime.bigint() - t0) / 1e9));
      };
      start();
    });
    best = Math.max(best, mibs);
  }
  return best;
}

/** Runs ssh (with -v) until it reports authentication; returns the elapsed milliseconds. */
function sshUntilAuthenticated(args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  const child = spawn('ssh', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (!err.includes('Authenticated to ')) return;
      resolve(Number(process.hrtime.bigint() - t0) / 1e6);
      child.kill('SIGTERM');
    });
    child.once('exit', () => reject(new Error(`ssh exited before authenticating: ${err}`)));
  });
}

export async function benchSsh(): Promise<BenchRow[]> {
  const dir = new TempDir('bench-ssh-');
  const servers: Array<{ close(cb?: () => void): unknown }> = [];
  try {
    const userCa = keygen(dir, 'user_ca');
    const hostCa = keygen(dir, 'host_ca');
    const host = keygen(dir, 'host');
    const hostCert = keygenSign(hostCa, host, { id: 'proxy', principals: ['proxy.test', '127.0.0.1'], host: true });
    const gw = keygen(dir, 'gw');
    const gwCert = keygenSign(userCa, gw, {
      id: 'gw',
      principals: ['gw1'],
      options: ['clear', 'permit-port-forwarding'],
    });

    // ssh2 ↔ ssh2 -------------------------------------------------------------------------------------------
    let serverConn: Connection | undefined;
    const server = createCertServer({ hostKey: host.privateKey, hostCertificate: hostCert.line }, (conn) => {
      conn.on('error', () => {});
      serverConn = conn;
      authenticateUser(conn, { trustedUserCaKeys: [userCa.blob] }).catch(() => {});
      conn.on('request', (acceptReq, _reject, name) => {
        if (name === 'tcpip-forward') acceptReq?.(1);
      });
    });
    servers.push(server);
    const port = await listen(server, 0);
    const clientOpts = {
      host: '127.0.0.1',
      port,
      username: 'gw1',
      privateKey: gw.privateKey,
      certificate: gwCert.line,
      trustedHostCaKeys: [hostCa.blob],
      hostPrincipal: 'proxy.test',
    };
    const ours: number[] = [];
    for (let i = 0; i < HANDSHAKES; i++) {
      const t0 = process.hrtime.bigint();
      const { client } = await connectWithCertificate(clientOpts);
      ours.push(Number(process.hrtime.bigint() - t0) / 1e6);
      client.end();
    }

    const { client } = await connectWithCertificate(clientOpts);
    client.on('error', () => {});
    await new Promise<void>((resolve, reject) => client.forwardIn('gw1', 0, (err) => (err ? reject(err) : resolve())));
    const ssh2Sink: Sink = {};
    client.on('tcp connection', (_info, acceptConn) => {
      acceptConn().on('data', (d: Buffer) => ssh2Sink.onData?.(d.length));
    });
    const ssh2Mibs = await timeStream(ssh2Sink, () =>
      serverConn!.forwardOut('gw1', 1, '127.0.0.1', 1, (err, ch: ServerChannel) => {
        if (err) throw err;
        void pump(ch);
      }),
    );
    client.end();

    // OpenSSH ssh ↔ sshd ------------------------------------------------------------------------------------
    const sshd = await startSshd({
      dir,
      hostKeyPath: host.path,
      hostCertPath: hostCert.path,
      trustedUserCaKeysPath: userCa.pubPath,
      principals: ['gw1'],
      extra: ['AllowTcpForwarding yes'],
    });
    const knownHosts = `@cert-authority [127.0.0.1]:* ${hostCa.publicLine}\n`;
    const khPath = dir.write('known_hosts_bench', knownHosts);
    const sshArgs = [
      ...['-F', '/dev/null', '-o', `UserKnownHostsFile=${khPath}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'],
      ...['-o', 'Ciphers=aes128-gcm@openssh.com', '-i', gw.path, '-o', `CertificateFile=${gwCert.path}`],
      ...['-p', String(sshd.port)],
    ];
    const reference: number[] = [];
    const oursToSshd: number[] = [];
    for (let i = 0; i < HANDSHAKES; i++) {
      reference.push(await sshUntilAuthenticated([...sshArgs, '-v', '-N', `${sshd.user}@127.0.0.1`]));
      const t0 = process.hrtime.bigint();
      const c = await connectWithCertificate({ ...clientOpts, port: sshd.port, username: sshd.user });
      oursToSshd.push(Number(process.hrtime.bigint() - t0) / 1e6);
      c.client.end();
    }

    // One remote forward through OpenSSH: bench socket → sshd → ssh → local sink
    const opensshSink: Sink = {};
    const sink = createServer((s: Socket) => s.on('data', (d: Buffer) => opensshSink.onData?.(d.length)));
    servers.push(sink);
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    const sinkPort = (sink.address() as { port: number }).port;
    const fwd = spawn(
      'ssh',
      [...sshArgs, '-o', 'ExitOnForwardFailure=yes', '-N', '-R', `0:127.0.0.1:${sinkPort}`, `${sshd.user}@127.0.0.1`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const remotePort = await new Promise<number>((resolve, reject) => {
      let err = '';
      fwd.stderr.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        const m = /Allocated port (\d+) for remote forward/.exec(err);
        if (m) resolve(Number(m[1]));
      });
      fwd.once('exit', () => reject(new Error(`ssh -R exited: ${err}`)));
    });
    const opensshMibs = await timeStream(opensshSink, () => {
      const s = connect(remotePort, '127.0.0.1', () => void pump(s));
    });
    fwd.kill('SIGTERM');
    await sshd.stop();

    const p = (v: number[], q: number) => fmt.ms(percentile(v, q));
    return [
      {
        area: 'ssh',
        metric: `handshake + cert auth, p50 / p95 (${HANDSHAKES} runs)`,
        ours: `${p(ours, 50)} / ${p(ours, 95)}`,
        reference: `${p(reference, 50)} / ${p(reference, 95)}`,
        note: 'ours: sshwire client → sshwire server; reference: ssh → sshd until "Authenticated" (incl. ssh start)',
      },
      {
        area: 'ssh',
        metric: 'handshake + cert auth, sshwire client → sshd, p50 / p95',
        ours: `${p(oursToSshd, 50)} / ${p(oursToSshd, 95)}`,
        note: 'same client against OpenSSH sshd (forks and re-execs per connection)',
      },
      {
        area: 'ssh',
        metric: `one forwarded channel, ${STREAM_BYTES / 2 ** 20} MiB, best of 2`,
        ours: fmt.mibs(ssh2Mibs),
        reference: fmt.mibs(opensshMibs),
        note: 'aes128-gcm both; ours: forwarded-tcpip ssh2 server → ssh2 client; reference: ssh -R via sshd',
      },
    ];
  } finally {
    for (const s of servers) s.close();
    dir.remove();
  }
}
