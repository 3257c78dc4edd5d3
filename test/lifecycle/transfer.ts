/**
 * Checksummed transfers through the deployment: a private target (a TCP server in the test process on
 * 127.0.0.1, echo or sink) that counts and SHA-256s every byte each connection sends it, and a sender that
 * pushes N random bytes through a local port (an infisical-connect listener) and compares what the target
 * received, and what came back, with what was sent. Every byte is checksummed.
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';

/** What one connection to the target sent it, so far. */
export interface TargetConnection {
  readonly id: number;
  /** First bytes received (identifies which sender this is: the data is random). */
  head: Buffer;
  bytes: number;
  /** SHA-256 (hex) of everything received so far. */
  sha256(): string;
  /** The peer ended (half-closed) or the socket closed. */
  ended: boolean;
  closed: boolean;
}

export interface Target {
  host: '127.0.0.1';
  port: number;
  /** "127.0.0.1:PORT", as a policy rule and `connect --target` name it. */
  address: string;
  mode: 'echo' | 'sink';
  connections: TargetConnection[];
  /** Connections not yet closed. */
  open(): number;
  /** Cuts every open connection (the target restarting). */
  dropAll(): void;
  close(): Promise<void>;
}

const HEAD = 32;

export async function startTarget(mode: 'echo' | 'sink' = 'echo'): Promise<Target> {
  const connections: TargetConnection[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const hash: Hash = createHash('sha256');
    const conn: TargetConnection = {
      id: connections.length + 1,
      head: Buffer.alloc(0),
      bytes: 0,
      sha256: () => hash.copy().digest('hex'),
      ended: false,
      closed: false,
    };
    connections.push(conn);
    socket.on('data', (d: Buffer) => {
      if (conn.head.length < HEAD) conn.head = Buffer.concat([conn.head, d.subarray(0, HEAD - conn.head.length)]);
      conn.bytes += d.length;
      hash.update(d);
      if (mode === 'echo' && !socket.write(d)) {
        socket.pause();
        socket.once('drain', () => socket.resume());
      }
    });
    socket.on('end', () => {
      conn.ended = true;
      socket.end();
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      conn.closed = true;
      sockets.delete(socket);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    mode,
    connections,
    open: () => sockets.size,
    dropAll: () => {
      for (const s of sockets) s.destroy();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

export interface TransferResult {
  /** Every byte arrived intact at the target (and, for an echo target, came back intact). */
  ok: boolean;
  /** Why not ok: a socket error, a timeout, a count or checksum mismatch. */
  error?: string;
  bytes: number;
  sentSha256: string;
  targetBytes: number;
  targetSha256: string | undefined;
  /** Echo targets only (0 / undefined for a sink). */
  echoedBytes: number;
  echoedSha256: string | undefined;
  ms: number;
}

export interface TransferOptions {
  /** Local port to connect to (an infisical-connect tcp listener). */
  port: number;
  target: Target;
  bytes: number;
  /** Whole transfer bound; default 60 s. */
  timeoutMs?: number;
  chunkBytes?: number;
}

/**
 * Sends `bytes` random bytes through 127.0.0.1:port to `target` and checksums both directions. Never throws
 * for a failed transfer (a revocation test expects some to fail): read `ok` and `error`, or use
 * assertByteExact.
 */
export async function transfer(o: TransferOptions): Promise<TransferResult> {
  const start = Date.now();
  const data = randomBytes(o.bytes);
  const sentSha256 = createHash('sha256').update(data).digest('hex');
  const echoHash = createHash('sha256');
  let echoedBytes = 0;
  const echo = o.target.mode === 'echo';
  const timeoutMs = o.timeoutMs ?? 60_000;
  let error: string | undefined;
  const socket = net.connect({ host: '127.0.0.1', port: o.port });
  // One bound for everything: a stalled tunnel never drains, so the timer destroys the socket.
  const timer = setTimeout(() => {
    error ??= `timed out after ${timeoutMs} ms (echoed ${echoedBytes} of ${o.bytes})`;
    socket.destroy();
  }, timeoutMs);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const echoed = new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      echoedBytes += d.length;
      echoHash.update(d);
      if (echoedBytes >= o.bytes) resolve();
    });
  });
  socket.on('error', (err) => {
    error ??= `socket error: ${err.message}`;
  });

  await Promise.race([once(socket, 'connect').catch(() => undefined), closed]);
  const chunk = o.chunkBytes ?? 64 * 1024;
  for (let off = 0; off < data.length && !socket.destroyed; off += chunk) {
    if (!socket.write(data.subarray(off, off + chunk))) {
      await Promise.race([once(socket, 'drain').catch(() => undefined), closed]);
    }
  }
  if (echo) {
    await Promise.race([echoed, closed]);
    if (echoedBytes < o.bytes) error ??= `closed after ${echoedBytes} of ${o.bytes} echoed bytes`;
  }

  // The target's side: the connection whose first bytes are ours. For a sink, wait for it to catch up.
  const head = data.subarray(0, HEAD);
  const deadline = start + timeoutMs;
  let conn = findConnection(o.target, head);
  while (!error && (!conn || conn.bytes < o.bytes) && !conn?.closed && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    conn = findConnection(o.target, head);
  }
  clearTimeout(timer);
  socket.destroy();

  const targetBytes = conn?.bytes ?? 0;
  const targetSha256 = conn?.sha256();
  const echoedSha256 = echo ? echoHash.digest('hex') : undefined;
  if (!error) {
    if (!conn) error = 'the target never saw this connection';
    else if (targetBytes !== o.bytes) error = `the target received ${targetBytes} of ${o.bytes} bytes`;
    else if (targetSha256 !== sentSha256) error = 'the target received different bytes (sha256 mismatch)';
    else if (echo && echoedBytes !== o.bytes) error = `${echoedBytes} of ${o.bytes} bytes came back`;
    else if (echo && echoedSha256 !== sentSha256) error = 'different bytes came back (sha256 mismatch)';
  }
  return {
    ok: error === undefined,
    ...(error === undefined ? {} : { error }),
    bytes: o.bytes,
    sentSha256,
    targetBytes,
    targetSha256,
    echoedBytes: echo ? echoedBytes : 0,
    echoedSha256,
    ms: Date.now() - start,
  };
}

function findConnection(target: Target, head: Buffer): TargetConnection | undefined {
  return target.connections.find((c) => c.head.length > 0 && head.subarray(0, c.head.length).equals(c.head));
}

/** Throws, saying what differed, unless the transfer was byte-exact both ways. */
export function assertByteExact(r: TransferResult, what = 'transfer'): void {
  if (r.ok) return;
  throw new Error(
    `${what} was not byte-exact: ${r.error}\n` +
      `  sent     ${r.bytes} bytes sha256 ${r.sentSha256}\n` +
      `  target   ${r.targetBytes} bytes sha256 ${r.targetSha256 ?? '-'}\n` +
      `  echoed   ${r.echoedBytes} bytes sha256 ${r.echoedSha256 ?? '-'}`,
  );
}

/** One connection to a reply target: what it read before the peer's FIN, and whether it replied. */
export interface ReplyExchange {
  requestBytes: number;
  requestSha256: string;
  /** The request ended (the peer shut down its write side) and the whole reply was handed to the socket. */
  replied: boolean;
  closed: boolean;
}

export interface ReplyTarget {
  host: '127.0.0.1';
  port: number;
  address: string;
  /** The reply every connection gets, and its SHA-256. */
  reply: Buffer;
  replySha256: string;
  exchanges: ReplyExchange[];
  close(): Promise<void>;
}

/**
 * A target for a request-then-FIN protocol (`nc -N`, an HTTP/1.0 client that shuts down its write side): it
 * reads the request until EOF, only then writes `replyBytes` random bytes, and closes. A path that tears the
 * stream down at the client's FIN loses the reply.
 */
export async function startReplyTarget(replyBytes: number): Promise<ReplyTarget> {
  const reply = randomBytes(replyBytes);
  const exchanges: ReplyExchange[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    const hash = createHash('sha256');
    const x: ReplyExchange = { requestBytes: 0, requestSha256: '', replied: false, closed: false };
    exchanges.push(x);
    socket.on('data', (d: Buffer) => {
      x.requestBytes += d.length;
      hash.update(d);
    });
    socket.once('end', () => {
      x.requestSha256 = hash.digest('hex');
      socket.end(reply, () => {
        x.replied = true;
      });
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      x.closed = true;
      sockets.delete(socket);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    reply,
    replySha256: createHash('sha256').update(reply).digest('hex'),
    exchanges,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

export interface HalfCloseResult {
  requestSha256: string;
  /** Bytes that came back before the stream ended, and their SHA-256. */
  replyBytes: number;
  replySha256: string;
  /** The stream ended with a FIN after the reply (not a reset, not a timeout). */
  endedCleanly: boolean;
  error?: string;
}

/**
 * Connects to 127.0.0.1:port, sends `requestBytes` random bytes, shuts down its write side (FIN) and reads
 * until the stream ends. `slowReader` reads in small steps with pauses, so that every hop still holds
 * buffered reply bytes when the far end has already closed.
 */
export async function halfCloseExchange(o: {
  port: number;
  requestBytes: number;
  slowReader?: boolean;
  timeoutMs?: number;
}): Promise<HalfCloseResult> {
  const request = randomBytes(o.requestBytes);
  const hash = createHash('sha256');
  let replyBytes = 0;
  let error: string | undefined;
  let endedCleanly = false;
  const socket = net.connect({ host: '127.0.0.1', port: o.port, allowHalfOpen: true });
  const timer = setTimeout(() => {
    error ??= `timed out after ${o.timeoutMs ?? 60_000} ms (${replyBytes} reply bytes so far)`;
    socket.destroy();
  }, o.timeoutMs ?? 60_000);
  socket.on('error', (err) => {
    error ??= `socket error: ${err.message}`;
  });
  socket.on('data', (d: Buffer) => {
    replyBytes += d.length;
    hash.update(d);
    if (o.slowReader) {
      socket.pause();
      setTimeout(() => socket.resume(), 5);
    }
  });
  socket.once('end', () => {
    endedCleanly = true;
  });
  socket.once('connect', () => socket.end(request));
  await once(socket, 'close');
  clearTimeout(timer);
  return {
    requestSha256: createHash('sha256').update(request).digest('hex'),
    replyBytes,
    replySha256: hash.digest('hex'),
    endedCleanly,
    ...(error === undefined ? {} : { error }),
  };
}
