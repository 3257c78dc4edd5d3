/**
 * Reference for the idle-tunnel row: what OpenSSH's sshd spends per idle reverse tunnel. A private sshd
 * (test/helpers/sshd) trusting a user CA takes N logins with a certificate, each holding a `tcpip-forward`
 * (ssh2 clients in this process, as the simulated gateways are); the memory is the sum of the proportional set
 * size (PSS: shared pages split between the processes sharing them) of every sshd process, minus the listener
 * alone. sshd runs two processes per connection (privilege separation), so N is kept small and the cost is given
 * per tunnel.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { connectWithCertificate } from '../lib/sshwire/client.js';
import type { Client } from '../lib/sshwire/ssh2.js';
import { keygen, keygenSign, TempDir } from '../test/helpers/openssh.js';
import { startSshd } from '../test/helpers/sshd.js';

function pssOf(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0; // gone meanwhile
  }
}

/** `root` and every process below it. */
function tree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, ppid] of parent) if (ppid === out[i]) out.push(pid);
  return out;
}

const pssOfTree = (root: number) => tree(root).reduce((n, pid) => n + pssOf(pid), 0);

/** Bytes of sshd memory (PSS) per idle tunnel, over `n` tunnels. */
export async function sshdPerTunnel(n: number): Promise<{ bytes: number; held: number }> {
  const dir = new TempDir('scale-sshd-');
  const clients: Client[] = [];
  const userCa = keygen(dir, 'user_ca');
  const hostCa = keygen(dir, 'host_ca');
  const host = keygen(dir, 'host');
  const hostCert = keygenSign(hostCa, host, { id: 'proxy-ref', principals: ['proxy.test'], host: true });
  const gw = keygen(dir, 'gw');
  const gwCert = keygenSign(userCa, gw, { id: 'gw', principals: ['gw'], options: ['clear', 'permit-port-forwarding'] });
  const sshd = await startSshd({
    dir,
    hostKeyPath: host.path,
    hostCertPath: hostCert.path,
    trustedUserCaKeysPath: userCa.pubPath,
    principals: ['gw'],
    extra: ['AllowTcpForwarding remote', 'GatewayPorts no', 'MaxStartups 100:30:200', 'LogLevel ERROR'],
  });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const alone = pssOfTree(sshd.pid);
    for (let i = 0; i < n; i++) {
      const { client } = await connectWithCertificate({
        host: '127.0.0.1',
        port: sshd.port,
        username: sshd.user,
        privateKey: gw.privateKey,
        certificate: gwCert.line,
        trustedHostCaKeys: [hostCa.blob],
        hostPrincipal: 'proxy.test',
        readyTimeout: 20_000,
      });
      client.on('error', () => {});
      await new Promise<void>((resolve, reject) =>
        client.forwardIn('127.0.0.1', 0, (e) => (e ? reject(e) : resolve())),
      );
      clients.push(client);
    }
    await new Promise((r) => setTimeout(r, 1000));
    return { bytes: (pssOfTree(sshd.pid) - alone) / clients.length, held: clients.length };
  } finally {
    for (const c of clients) c.end();
    await sshd.stop();
    dir.remove();
  }
}
