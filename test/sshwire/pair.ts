/**
 * Two real ssh2 peers on loopback with one forwarded-tcpip channel between them, as a tunnel's: the server opens
 * it (`up`, the sending side), the client accepts it (`down`). Shared by the sshwire tests.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import { Client, type ClientChannel, Server, type ServerChannel } from '../../lib/sshwire/ssh2.js';

const hostKey = ssh2.utils.generateKeyPairSync('ed25519').private;
export type Options = Record<string, unknown>;

/** A server and a client with `opts` each; the server opens one forwarded-tcpip channel to the client. */
export async function pair(opts: Options = {}) {
  const server = new Server({ hostKeys: [hostKey], ...opts }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('request', (accept) => {
      accept?.(1);
      server.emit('forward', conn);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = new Client();
  const ready = once(client, 'ready');
  client.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, username: 'u', ...opts });
  await ready;
  const forwarded = once(server, 'forward');
  client.forwardIn('gw', 0, () => {});
  const [conn] = (await forwarded) as [import('ssh2').Connection];
  const accepted = new Promise<ClientChannel>((resolve) =>
    client.once('tcp connection', (_i, accept) => resolve(accept())),
  );
  const up = await new Promise<ServerChannel>((resolve, reject) =>
    conn.forwardOut('gw', 1, '192.0.2.1', 5, (err, ch) => (err ? reject(err) : resolve(ch))),
  );
  const down = await accepted;
  return {
    up,
    down,
    close: () => {
      client.end();
      server.close();
    },
  };
}
