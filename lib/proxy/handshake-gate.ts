/**
 * What a listener holds for peers that have not yet proven who they are, bounded the same way on the SSH and
 * the TLS listener: connections at once (max_connections), connections still in their handshake per source
 * (max_unauthenticated_per_source), and the time from accept to authentication (handshake_timeout). The
 * decision is admitConnection (admission.ts); this class only counts and keeps the clock.
 *
 * The handshake time is a deadline from accept, not an idle timer: a peer that drips one byte at a time (an
 * SSH version line, a TLS ClientHello) is cut exactly like a silent one. On the TLS side it runs until the route
 * is admitted, so it also bounds the decision after the handshake, not only the handshake.
 */
import type { Server, Socket } from 'node:net';
import { admitConnection, type ConnectionLimits, type LimitRefusal, sourceKey } from './admission.js';

export interface GateLimits extends ConnectionLimits {
  /** From TCP accept to authentication. */
  handshakeTimeoutMs: number;
}

export interface HandshakeTicket {
  /** The source this connection counts against (sourceKey of its address). */
  readonly source: string;
  /** The peer proved who it is: the deadline stops and its source slot is free again. Idempotent. */
  authenticated(): void;
  /** The peer is being told it is refused: the deadline still closes it, but is not reported as a timeout. */
  refused(): void;
}

export interface HandshakeGateOptions {
  /** Read at every accept, so a reload applies to the next connection. */
  limits: () => GateLimits;
  /** The deadline passed before authentication (the socket is destroyed right after). */
  onTimeout: (ticket: HandshakeTicket, remote: string) => void;
}

export class HandshakeGate {
  readonly #o: HandshakeGateOptions;
  #open = 0;
  #unauthenticated = 0;
  readonly #bySource = new Map<string, number>();

  constructor(options: HandshakeGateOptions) {
    this.#o = options;
  }

  /** Connections open now, authenticated or not. */
  get open(): number {
    return this.#open;
  }

  /** Connections open now that have not authenticated yet. */
  get unauthenticated(): number {
    return this.#unauthenticated;
  }

  /** Sources with connections in their handshake now (the per-source table's size; 0 when none is pending). */
  get sources(): number {
    return this.#bySource.size;
  }

  /** At accept, before a byte is read: a ticket, or the refusal (the caller destroys the socket). */
  enter(socket: Socket): { ok: true; value: HandshakeTicket } | LimitRefusal {
    const limits = this.#o.limits();
    const source = sourceKey(socket.remoteAddress);
    const verdict = admitConnection(
      { open: this.#open, unauthenticatedFromSource: this.#bySource.get(source) ?? 0 },
      limits,
      source,
    );
    if (!verdict.ok) return verdict as LimitRefusal;
    this.#open++;
    this.#unauthenticated++;
    this.#bySource.set(source, (this.#bySource.get(source) ?? 0) + 1);
    let pending = true;
    let refused = false;
    const release = (): void => {
      if (!pending) return;
      pending = false;
      this.#unauthenticated--;
      const n = (this.#bySource.get(source) ?? 1) - 1;
      if (n > 0) this.#bySource.set(source, n);
      else this.#bySource.delete(source);
    };
    const ticket: HandshakeTicket = {
      source,
      authenticated: () => {
        clearTimeout(deadline);
        release();
      },
      refused: () => {
        refused = true;
      },
    };
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const deadline = setTimeout(() => {
      if (!refused) this.#o.onTimeout(ticket, remote);
      socket.destroy();
    }, limits.handshakeTimeoutMs);
    socket.once('close', () => {
      clearTimeout(deadline);
      release();
      this.#open--;
    });
    return { ok: true, value: ticket };
  }
}

/** Binds a listener's server; resolves with the port bound (the one asked for, or the kernel's pick for 0). */
export function listenOn(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}
