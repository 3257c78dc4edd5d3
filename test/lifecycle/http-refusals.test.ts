/**
 * HTTP mode refusals reach the client, whole, every time, through the real programs (CA, two proxies, a
 * gateway, `infisical-connect http`, each a process started through its CLI). The gateway answers a refused
 * request with its 403 (JSON body, `x-infisical-error`) and, for a request that asked for `Connection: close`
 * or a refused stream, closes. The answer used to be lost about one time in ten to twenty: the proxy destroyed
 * the platform connection as soon as the gateway's channel closed, while the 403 could still be held in the
 * TLS layer on its way out (lib/protocol/splice.ts now destroys only once it is flushed).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { freePort } from '../helpers/openssh.js';
import { withDeployment } from './deploy.js';

const GRANT_REFUSALS = 50;
const TARGET_REFUSALS = 10;

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  error?: string;
}

/**
 * One request on a fresh connection (with `bodyBytes` of request body), read until the server closes; the raw
 * bytes parsed by hand, so that a short or missing answer cannot be papered over by an HTTP client.
 */
async function rawRequest(port: number, path: string, bodyBytes = 0): Promise<RawAnswer> {
  const socket = net.connect({ host: '127.0.0.1', port });
  const parts: Buffer[] = [];
  let error: string | undefined;
  socket.on('data', (d: Buffer) => parts.push(d));
  socket.on('error', (err) => {
    error ??= err.message;
  });
  socket.setTimeout(20_000, () => {
    error ??= 'timeout';
    socket.destroy();
  });
  socket.once('connect', () => {
    const method = bodyBytes > 0 ? 'POST' : 'GET';
    socket.write(
      `${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-length: ${bodyBytes}\r\nconnection: close\r\n\r\n`,
    );
    if (bodyBytes > 0) socket.write(Buffer.alloc(bodyBytes, 0x61));
  });
  await once(socket, 'close');
  const text = Buffer.concat(parts).toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  const head = split < 0 ? text : text.slice(0, split);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  );
  return {
    status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1] ?? 0),
    headers,
    body: split < 0 ? '' : text.slice(split + 4),
    ...(error === undefined ? {} : { error }),
  };
}

/** Why an answer is not the whole refusal with this code (undefined when it is). */
function notWhole(a: RawAnswer, code: string): string | undefined {
  if (a.status !== 403) return `status ${a.status}`;
  if (a.headers['x-infisical-error'] !== code) return `x-infisical-error ${a.headers['x-infisical-error']}`;
  if (a.headers['connection'] !== 'close') return `connection: ${a.headers['connection']}`;
  const length = Buffer.byteLength(a.body, 'latin1');
  if (length !== Number(a.headers['content-length'])) return `${length} of ${a.headers['content-length']} body bytes`;
  try {
    const body = JSON.parse(a.body) as { code?: string; message?: unknown };
    if (body.code !== code || typeof body.message !== 'string') return `body ${a.body}`;
  } catch {
    return `body is not JSON: ${a.body}`;
  }
  return undefined;
}

test(`${GRANT_REFUSALS + TARGET_REFUSALS} refused HTTP requests: every 403 arrives whole before the close`, async (t) => {
  const web = http.createServer((_req, res) => res.end('the granted service'));
  web.listen(0, '127.0.0.1');
  await once(web, 'listening');
  t.after(() => web.close());
  const granted = `127.0.0.1:${(web.address() as AddressInfo).port}`;
  const notAllowed = `127.0.0.1:${await freePort()}`; // in the CA policy, not in the gateway's allowlist
  await withDeployment(
    { proxies: 2, gateways: 1, allowPorts: [Number(granted.split(':')[1])], policyTargets: [granted, notAllowed] },
    async (d) => {
      const service = await d.connect({ command: 'http', target: `http://${granted}` });
      const refused = await d.connect({ command: 'http', target: `http://${notAllowed}` });
      const lost: string[] = [];
      const check = (what: string, a: RawAnswer, code: string) => {
        const why = notWhole(a, code);
        if (why !== undefined) lost.push(`${what}: ${why}${a.error ? ` (${a.error})` : ''}`);
      };
      // The grant does not cover the target named in an absolute-form request: refused by the gateway's HTTP
      // server (serveHttp), one request per stream, one after the other.
      for (let i = 0; i < GRANT_REFUSALS; i++) {
        check(`grant #${i}`, await rawRequest(service.port, `http://127.0.0.1:1/g${i}`), 'E_GRANT_TARGET');
      }
      // The target is not in the allowlist: the whole stream is refused (serveHttpRefusal), while the request
      // body is still flowing, five at once.
      for (let i = 0; i < TARGET_REFUSALS; i += 5) {
        const batch = await Promise.all([0, 1, 2, 3, 4].map((j) => rawRequest(refused.port, `/t${i + j}`, 256 * 1024)));
        for (const [j, a] of batch.entries()) check(`target #${i + j}`, a, 'E_TARGET_NOT_ALLOWED');
      }
      assert.deepEqual(lost, [], `every refusal arrives whole (${lost.length} did not)`);
    },
  );
});
