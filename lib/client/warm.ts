/**
 * One relay opened ahead of need. Once a stream has opened and had its first answer (or after a short delay:
 * DEFAULT_WARM_REFILL_DELAY_MS), the connector opens the next relay in the background (dial.ts openRelay: outer mTLS to the proxy that just worked, its certificate judged, the proxy's
 * status line: it has admitted the route and holds a channel of the gateway's tunnel), so the next local
 * connection runs only the inner handshake, the gateway's admission and its target dial: the outer handshake
 * and the channel open (about two thirds of a new stream's setup, docs/performance.md) are off its path.
 *
 * For a tcp or ping grant whose gateway negotiated `tcp+go` or `ping+go` on its last stream, the relay also
 * carries its inner session, held (connector.ts #openAhead, dial.ts holdInner): the gateway starts the mode (tcp:
 * dials the target) only at the stream's GO.
 *
 * Nothing is decided ahead: the gateway admits the grant (validity, revocations, target, mode) when the relay is
 * used (at the inner handshake, or again at GO for a held session); the proxy cuts the relay when the outer
 * certificate ends or is revoked.
 * A relay waits at most `maxAgeMs` (3 s by default, at most 8 s through --warm-relay: below the gateway's inner
 * handshake timeout, 10 s by default, which runs while it waits); then it
 * is ended with a close_notify and FIN, which the gateway takes as a platform that gave up before its handshake
 * (the channel closes, no refusal is recorded), and is not replaced: an idle client holds nothing open. It is
 * kept for one grant object and one half-close setting only; a new grant starts without one.
 */
import type { OpenRelay } from './dial.js';
import type { ClientGrant, ProxyEndpoint } from './grant.js';

export const DEFAULT_WARM_MAX_AGE_MS = 3000;
/**
 * How long the next relay's open waits after a stream opened, unless that stream's first bytes came back
 * sooner (`start`) or another stream asks for it. Opened at once, its outer handshake and certificate checks
 * take the CPU of all three processes exactly while the new stream's first round trip goes through them
 * (docs/performance.md "New-stream setup").
 */
export const DEFAULT_WARM_REFILL_DELAY_MS = 25;
/** After a relay is ended, the time allowed for the far side's close before it is destroyed. */
const END_GRACE_MS = 2000;

export interface WarmRelayOptions {
  open: (grant: ClientGrant, proxy: ProxyEndpoint, halfOpen: boolean) => Promise<OpenRelay>;
  maxAgeMs?: number;
  /** Default DEFAULT_WARM_REFILL_DELAY_MS; 0 opens the next relay as soon as a stream opened. */
  refillDelayMs?: number;
}

interface Scheduled {
  grant: ClientGrant;
  proxy: ProxyEndpoint;
  halfOpen: boolean;
  timer: NodeJS.Timeout;
}

interface Slot {
  relay: OpenRelay;
  timer: NodeJS.Timeout;
  onClose: () => void;
  onEnd: () => void;
}

interface Opening {
  grant: ClientGrant;
  halfOpen: boolean;
  /** A stream asked for it while it was opening: it goes to that stream, not into the slot. */
  claimed: boolean;
  /** The relay when claimed, else undefined (also when the open failed). */
  relay: Promise<OpenRelay | undefined>;
}

export class WarmRelay {
  readonly #o: WarmRelayOptions;
  #slot: Slot | undefined;
  #opening: Opening | undefined;
  #scheduled: Scheduled | undefined;
  #closed = false;

  constructor(o: WarmRelayOptions) {
    this.#o = o;
  }

  /**
   * The relay held for exactly this grant and half-close setting, still open; it is the caller's from now. One
   * still opening is awaited (it is further along than a new dial would be); undefined when there is none.
   */
  async take(grant: ClientGrant, halfOpen: boolean): Promise<OpenRelay | undefined> {
    const slot = this.#slot;
    if (slot) {
      const { relay } = slot;
      if (relay.grant !== grant || relay.halfOpen !== halfOpen || relay.outer.destroyed || relay.outer.readableEnded) {
        this.#discard();
        return undefined;
      }
      this.#release(slot);
      relay.outer.ref();
      return relay;
    }
    // Asked for before its deferred open: opened now, and this stream waits for it (as for one opening).
    const due = this.#scheduled;
    if (due && due.grant === grant && due.halfOpen === halfOpen) this.start();
    const opening = this.#opening;
    if (!opening || opening.claimed || opening.grant !== grant || opening.halfOpen !== halfOpen) return undefined;
    opening.claimed = true;
    const relay = await opening.relay;
    return relay && !relay.outer.destroyed && !relay.outer.readableEnded ? relay : undefined;
  }

  /**
   * Opens the next relay in the background after the refill delay (or at `start`), unless one is held, opening
   * or due already; a failure only leaves none.
   */
  refill(grant: ClientGrant, proxy: ProxyEndpoint, halfOpen: boolean): void {
    if (this.#closed || this.#slot || this.#opening || this.#scheduled) return;
    const delay = this.#o.refillDelayMs ?? DEFAULT_WARM_REFILL_DELAY_MS;
    if (delay <= 0) {
      this.#open(grant, proxy, halfOpen);
      return;
    }
    const timer = setTimeout(() => this.start(), delay);
    timer.unref();
    this.#scheduled = { grant, proxy, halfOpen, timer };
  }

  /** Opens the relay that is due now (the stream that made it due has had its first answer). */
  start(): void {
    const due = this.#scheduled;
    if (!due) return;
    clearTimeout(due.timer);
    this.#scheduled = undefined;
    if (this.#closed || this.#slot || this.#opening) return;
    this.#open(due.grant, due.proxy, due.halfOpen);
  }

  #open(grant: ClientGrant, proxy: ProxyEndpoint, halfOpen: boolean): void {
    const opening: Opening = { grant, halfOpen, claimed: false, relay: Promise.resolve(undefined) };
    this.#opening = opening;
    opening.relay = this.#o.open(grant, proxy, halfOpen).then(
      (relay) => {
        this.#opening = undefined;
        if (opening.claimed) return relay;
        if (this.#closed || this.#slot) {
          endRelay(relay);
          return undefined;
        }
        this.#hold(relay);
        return undefined;
      },
      () => {
        this.#opening = undefined;
        return undefined;
      },
    );
  }

  /** Ends the held relay, if any, and opens no more. */
  close(): void {
    this.#closed = true;
    if (this.#scheduled) clearTimeout(this.#scheduled.timer);
    this.#scheduled = undefined;
    this.#discard();
  }

  #hold(relay: OpenRelay): void {
    // Held, not in use: it must not keep the process alive (a ping or a finished command exits at once).
    relay.outer.unref();
    const onClose = () => {
      if (this.#slot?.relay === relay) this.#release(this.#slot);
    };
    relay.outer.once('close', onClose);
    // Half-open, a relay the proxy ended is not closed: it is no use any more (its inner handshake would wait
    // for a gateway that can no longer answer). A held one ends both its sockets itself (dial.ts holdInner).
    const onEnd = () => {
      if (this.#slot?.relay === relay) this.#discard();
    };
    relay.outer.once('end', onEnd);
    const timer = setTimeout(() => this.#discard(), this.#o.maxAgeMs ?? DEFAULT_WARM_MAX_AGE_MS);
    timer.unref();
    this.#slot = { relay, timer, onClose, onEnd };
  }

  #release(slot: Slot): void {
    clearTimeout(slot.timer);
    slot.relay.outer.off('close', slot.onClose);
    slot.relay.outer.off('end', slot.onEnd);
    this.#slot = undefined;
  }

  #discard(): void {
    const slot = this.#slot;
    if (!slot) return;
    this.#release(slot);
    endRelay(slot.relay);
  }
}

/** close_notify and FIN: the proxy passes the end on, the gateway closes the channel without a refusal. */
function endRelay(relay: OpenRelay): void {
  relay.outer.end();
  setTimeout(() => relay.outer.destroy(), END_GRACE_MS).unref();
}
