/**
 * Local listeners, like `ssh -L`: every connection accepted on 127.0.0.1:PORT gets its own relayed stream to
 * the target (tcp mode) or to the gateway's HTTP reverse proxy for the target (http mode), and bytes are piped
 * both ways with backpressure and half-close. Grants come from the connector's cache, so a burst of connections costs one CA
 * round trip.
 *
 * The gateway tells why it refuses a stream (its status line, read by dial.ts): a refusal is a `failed` event
 * with the gateway's code, and the local connection is closed (tcp) or answered 502 (http). A stream that
 * opened and then ended before any byte came back is reported as `early`: the target said nothing. In http
 * mode the gateway's refusal is the first response of the stream (passed through as it is); when it says the
 * grant expired or was revoked, the connector drops the grant so that the next connection gets a fresh one.
 *
 * In tcp mode the local connection's first bytes go with the end of the inner handshake, before the gateway's
 * status line (dial.ts `firstBytes`), and those that arrive while the line is awaited follow as they come
 * (`moreBytes`, 64 KiB in all): read ahead from the accept and peeked (read and put back), so that a stream
 * dialled again (a fresh grant, another proxy) sends them all again; they leave the local socket's buffer only
 * once the stream opened (exactly `sentFirst` of them). A refused stream's local connection is closed as before.
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { type ErrorCode, ErrorCodes } from '../errors/codes.js';
import type { GrantTarget } from '../pki/grant.js';
import { splice } from '../protocol/splice.js';
import type { GatewayConnector } from './connector.js';
import type { RelayedStream } from './dial.js';
import { atHop, ConnectError } from './errors.js';
import { EARLY_BYTES_MAX } from './inner-session.js';

/**
 * How far a tcp-mode local connection is read ahead (its readable high-water mark; the writable one follows): the
 * early bytes that may go before the gateway's status line (EARLY_BYTES_MAX). A socket stops reading once its
 * buffer reaches the mark, and emits 'readable' for new bytes (what watchLocal follows) only while the buffer is
 * below it. With Node 20's default (16 KiB) a client whose bytes came in pieces sent 16 KiB and what one read
 * brought after the next peek before the line (the cap only when the kernel had gathered the rest meanwhile), the
 * rest a round trip later. The cost: a pending local connection holds less than 128 KiB (the mark plus one read of
 * at most 64 KiB) where it held less than 80 KiB, 32 MiB at most for maxConnections' 256 (20 MiB); an open
 * stream's local socket queues up to 64 KiB towards a slow reader before the inner session is paused. Node 22's
 * default mark is 64 KiB too.
 */
const LOCAL_READ_AHEAD = EARLY_BYTES_MAX;

export type ForwardEvent =
  | { type: 'accepted'; id: number; from: string }
  | {
      type: 'opened';
      id: number;
      proxyId: string;
      setupMs: number;
      warm: boolean;
      /** Its inner session was held ahead with the relay (`tcp+go`): only GO and the first bytes were left. */
      held: boolean;
      resumed: boolean;
      outerResumed: boolean;
      /** Bytes sent with the inner handshake, before the gateway's status line. */
      sentFirst: number;
    }
  | { type: 'failed'; id: number; error: ConnectError }
  | {
      type: 'closed';
      id: number;
      bytesUp: number;
      bytesDown: number;
      ms: number;
      /** Accept → the first byte back from the far side (null: none came). */
      firstByteMs: number | null;
      early: boolean;
    };

export interface ForwarderOptions {
  connector: GatewayConnector;
  target: GrantTarget;
  mode: 'tcp' | 'http';
  host: string;
  port: number;
  /** Local connections served at once; more are closed at accept. */
  maxConnections?: number;
  onEvent?: (e: ForwardEvent) => void;
}

export class LocalForwarder {
  readonly #o: ForwarderOptions;
  readonly #server: net.Server;
  /**
   * Every local connection until it closes: one whose stream is done but that still lingers (splice.ts LINGER_MS)
   * included, so that close() destroys it at once (test/client/linger.test.ts).
   */
  readonly #live = new Set<net.Socket>();
  #nextId = 1;
  /** Totals for status output. */
  readonly stats = { accepted: 0, opened: 0, failed: 0, bytesUp: 0, bytesDown: 0 };

  constructor(o: ForwarderOptions) {
    this.#o = o;
    this.#server = net.createServer(
      { pauseOnConnect: true, allowHalfOpen: true, ...(o.mode === 'tcp' ? { highWaterMark: LOCAL_READ_AHEAD } : {}) },
      (local) => this.#serve(local),
    );
  }

  /**
   * Starts listening; resolves with the bound address (port 0 picks a free one). A port taken by another
   * program is E_ADDRESS_IN_USE, an address this machine cannot bind E_CONFIG_INVALID, both naming it.
   */
  async listen(): Promise<AddressInfo> {
    this.#server.listen(this.#o.port, this.#o.host);
    try {
      await once(this.#server, 'listening');
    } catch (err) {
      throw listenError(err as NodeJS.ErrnoException, this.#o.host, this.#o.port);
    }
    return this.#server.address() as AddressInfo;
  }

  /** Stops accepting, ends live connections and waits for the listener to close. */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.#server.close(() => r()));
    for (const s of this.#live) s.destroy();
    await closed;
  }

  #serve(local: net.Socket): void {
    const id = this.#nextId++;
    const emit = this.#o.onEvent ?? (() => undefined);
    if (this.#live.size >= (this.#o.maxConnections ?? 256)) {
      local.destroy();
      return;
    }
    this.#live.add(local);
    this.stats.accepted++;
    local.once('close', () => this.#live.delete(local));
    local.on('error', () => undefined);
    local.setNoDelay(true);
    emit({ type: 'accepted', id, from: `${local.remoteAddress}:${local.remotePort}` });
    const t0 = performance.now();
    const early = this.#o.mode === 'tcp';
    // Starts reading into the socket's buffer (up to LOCAL_READ_AHEAD) without consuming: see peekFirst.
    if (early) local.read(0);
    const opts = {
      allowHalfOpen: true,
      ...(early
        ? { firstBytes: () => peekFirst(local), moreBytes: (more: () => void) => watchLocal(local, more) }
        : {}),
    };
    this.#o.connector.open(this.#o.target, this.#o.mode, opts).then(
      (stream) => {
        this.stats.opened++;
        // What went with the handshake leaves the buffer now; the rest (and the end, if any) follows in order.
        if (stream.sentFirst > 0 && !local.destroyed) local.read(stream.sentFirst);
        emit({
          type: 'opened',
          id,
          proxyId: stream.proxy.proxyId,
          setupMs: performance.now() - t0,
          warm: stream.warm ?? false,
          held: stream.held ?? false,
          resumed: stream.resumed,
          outerResumed: stream.outerResumed,
          sentFirst: stream.sentFirst,
        });
        const inner = stream.socket;
        if (local.destroyed) {
          inner.destroy();
          return;
        }
        // Half-close both ways (lib/protocol/splice.ts): a client that shuts down its write side after its
        // request still gets the whole reply; the stream closes once both directions ended and were flushed.
        // The inner session rides on the outer TLS socket, one write at a time: gather what the local side sends.
        // A stream cut short (its gateway died: the proxy resets the relay) is reset towards the local client
        // too, so the application sees ECONNRESET, not an orderly end it could take for a complete reply. Set
        // before the splice's own listeners, which close the local side once the inner one is gone.
        const cut = (): void => {
          if (!inner.readableEnded && !local.destroyed) local.resetAndDestroy();
        };
        inner.once('error', cut);
        inner.once('close', cut);
        const s = splice(local, inner, { coalesce: ['up'], linger: ['downstream'] });
        let firstByteMs: number | undefined;
        inner.on('data', (d: Buffer) => {
          if (firstByteMs !== undefined) return;
          firstByteMs = performance.now() - t0;
          this.#o.connector.answered();
          if (this.#o.mode === 'http') this.#checkHttpRefusal(stream, d);
        });
        void s.done.then(() => {
          const { down } = s.bytes;
          const up = s.bytes.up + stream.sentFirst;
          this.stats.bytesUp += up;
          this.stats.bytesDown += down;
          const ms = performance.now() - t0;
          emit({
            type: 'closed',
            id,
            bytesUp: up,
            bytesDown: down,
            ms,
            firstByteMs: firstByteMs ?? null,
            early: down === 0,
          });
        });
        local.resume(); // held since accept (pauseOnConnect): a 'data' listener does not start it
      },
      (err: unknown) => {
        const e = atHop(err, 'local');
        this.stats.failed++;
        emit({ type: 'failed', id, error: e });
        if (this.#o.mode === 'http') httpRefusal(local, e);
        else local.destroy();
      },
    );
  }

  #checkHttpRefusal(stream: RelayedStream, first: Buffer): void {
    const code = gatewayHttpRefusal(first);
    if (!code) return;
    const error = new ConnectError(code, 'gateway', `the gateway answered HTTP with ${code}`, {
      proxyId: stream.proxy.proxyId,
      gatewayId: stream.grant.spec.gatewayId,
    });
    this.#o.connector.refusedOn(stream, error);
  }
}

/**
 * The bytes the local connection sent so far, left in its buffer (read and put back at once, in the same
 * tick: nothing else reads it meanwhile, and an end already received is not emitted while bytes remain).
 * Undefined when there are none: read() on an empty buffer after the end would emit 'end' before splice()
 * listens for it.
 */
function peekFirst(local: net.Socket): Buffer | undefined {
  if (local.destroyed || local.readableLength === 0) return undefined;
  const bytes = local.read() as Buffer | null;
  if (bytes === null) return undefined;
  local.unshift(bytes);
  return bytes;
}

/**
 * Calls `more` each time the local connection's buffer grew, until the returned function is called (the
 * gateway's status line came). A 'readable' listener puts the socket in paused mode, and its removal back to
 * what it was (on the next tick), or flowing when the splice resumed it meanwhile: the splice then reads every
 * byte once, in order, the end last. peekFirst's unshift emits 'readable' again with no new byte: ignored, or
 * each peek would call for the next. An end received meanwhile emits 'readable' too, with nothing new: it stays
 * behind the bytes for the splice.
 */
function watchLocal(local: net.Socket, more: () => void): () => void {
  let seen = local.readableLength;
  const onReadable = (): void => {
    if (local.destroyed || local.readableLength <= seen) return;
    seen = local.readableLength;
    more();
  };
  local.on('readable', onReadable);
  return () => local.off('readable', onReadable);
}

/**
 * The code of the gateway's HTTP refusal (lib/gateway/modes.ts: 403/502/503 with `x-infisical-error`) when the
 * first bytes of an http-mode stream are one; undefined for anything else. Only the first response of a stream
 * can be the gateway's own refusal of the grant: admission comes before any request is forwarded.
 */
export function gatewayHttpRefusal(first: Buffer): ErrorCode | undefined {
  const head = first.subarray(0, 4096).toString('latin1');
  const end = head.indexOf('\r\n\r\n');
  if (!/^HTTP\/1\.[01] 403 /.test(head) || end < 0) return undefined;
  const m = /\r\nx-infisical-error: *(E_[A-Z_]+) *\r\n/i.exec(head.slice(0, end + 2));
  const code = m?.[1];
  return code !== undefined && Object.hasOwn(ErrorCodes, code) ? (code as ErrorCode) : undefined;
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): ConnectError {
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why: Partial<Record<string, [ErrorCode, string]>> = {
    EADDRINUSE: ['E_ADDRESS_IN_USE', 'is in use by another program; pick another port, or 0 for a free one'],
    EACCES: ['E_CONFIG_INVALID', 'may not be bound by this user (ports below 1024 need privileges)'],
    EADDRNOTAVAIL: ['E_CONFIG_INVALID', 'is not an address of this machine'],
  };
  const [code, text] = why[err.code ?? ''] ?? ['E_CONFIG_INVALID', `cannot be listened on (${err.message})`];
  return new ConnectError(code, 'local', `--listen ${address} ${text}`, { cause: err });
}

/** An HTTP client gets a 502 naming the hop and code, not a bare reset. */
function httpRefusal(local: net.Socket, e: ConnectError): void {
  const body = `${JSON.stringify({ code: e.code, hop: e.hop, proxyId: e.proxyId, message: e.detail })}\n`;
  local.end(
    `HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-infisical-error: ${e.code}\r\nconnection: close\r\n\r\n${body}`,
  );
  local.resume();
}
