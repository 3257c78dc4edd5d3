/**
 * systemd service notifications (sd_notify(3)) for Type=notify units: READY, STATUS, RELOADING, STOPPING,
 * EXTEND_TIMEOUT_USEC and the watchdog. A no-op when NOTIFY_SOCKET is unset (run by hand, in tests, in
 * containers), so daemons call it unconditionally.
 *
 * Sending goes through the `sd-notify` addon's `sendState(string)`, which calls libsystemd's
 * sd_notify(0, state) with any text: no sender of our own is needed. Its return value is dropped by the
 * addon, so a failed send is silent (as it is for most daemons linking libsystemd).
 */
import { createRequire } from 'node:module';

/** Sends one notification datagram, e.g. "READY=1" or "RELOADING=1\nMONOTONIC_USEC=123". */
export type NotifySend = (state: string) => void;

interface SdNotifyAddon {
  sendState(state: string): void;
}

let addonSend: NotifySend | undefined;

/** Loaded lazily: a host without NOTIFY_SOCKET never needs the native addon. */
function defaultSend(): NotifySend {
  if (!addonSend) {
    const addon = createRequire(import.meta.url)('sd-notify') as SdNotifyAddon;
    addonSend = (state) => addon.sendState(state);
  }
  return addonSend;
}

export interface NotifierOptions {
  /** Environment holding NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID; default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Injected for tests; default the sd-notify addon. */
  send?: NotifySend;
  /** Our pid, compared with WATCHDOG_PID; default process.pid. */
  pid?: number;
}

/** CLOCK_MONOTONIC in microseconds: process.hrtime is CLOCK_MONOTONIC on Linux, as systemd expects. */
export function monotonicMicros(): bigint {
  return process.hrtime.bigint() / 1000n;
}

/** The watchdog ping interval in ms (half of WATCHDOG_USEC), or undefined when the watchdog is not ours. */
export function watchdogPingInterval(
  env: Readonly<Record<string, string | undefined>>,
  pid: number,
): number | undefined {
  const usec = env['WATCHDOG_USEC'];
  if (!usec || !/^\d+$/.test(usec) || Number(usec) === 0) return undefined;
  const watchdogPid = env['WATCHDOG_PID'];
  if (watchdogPid && watchdogPid !== String(pid)) return undefined;
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

/** Newlines would start a new assignment in the datagram; a status is one line. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 1024);
}

export class SystemdNotifier {
  /** False when NOTIFY_SOCKET is unset: every method is then a no-op. */
  readonly enabled: boolean;
  /** Watchdog ping interval in ms, or undefined when WatchdogSec is not set for us. */
  readonly watchdogIntervalMs: number | undefined;
  #send: NotifySend | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pings = 0;

  constructor(options: NotifierOptions = {}) {
    const env = options.env ?? process.env;
    this.enabled = Boolean(env['NOTIFY_SOCKET']);
    this.watchdogIntervalMs = this.enabled ? watchdogPingInterval(env, options.pid ?? process.pid) : undefined;
    this.#send = options.send;
  }

  /** Watchdog pings sent so far (for tests and metrics). */
  get watchdogPings(): number {
    return this.#pings;
  }

  #notify(lines: string[]): void {
    if (!this.enabled) return;
    this.#send ??= defaultSend();
    this.#send(lines.join('\n'));
  }

  /** READY=1 (startup finished or reload done); also starts the watchdog the first time. */
  ready(status?: string): void {
    this.#notify(status === undefined ? ['READY=1'] : ['READY=1', `STATUS=${oneLine(status)}`]);
    this.startWatchdog();
  }

  status(text: string): void {
    this.#notify([`STATUS=${oneLine(text)}`]);
  }

  /** RELOADING=1 with MONOTONIC_USEC, as systemd ≥ 253 requires for Type=notify-reload (harmless before). */
  reloading(status?: string): void {
    const lines = ['RELOADING=1', `MONOTONIC_USEC=${monotonicMicros()}`];
    if (status !== undefined) lines.push(`STATUS=${oneLine(status)}`);
    this.#notify(lines);
  }

  stopping(status?: string): void {
    this.#notify(status === undefined ? ['STOPPING=1'] : ['STOPPING=1', `STATUS=${oneLine(status)}`]);
  }

  /** Asks systemd for more time in the current phase (a long drain), in ms from now. */
  extendTimeout(ms: number): void {
    this.#notify([`EXTEND_TIMEOUT_USEC=${Math.max(0, Math.ceil(ms)) * 1000}`]);
  }

  /**
   * Pings WATCHDOG=1 at half the interval from an event-loop timer, so a stalled loop stops the pings and
   * systemd restarts the daemon. The timer is unref'd: it never keeps the process alive. Idempotent.
   */
  startWatchdog(): void {
    if (this.watchdogIntervalMs === undefined || this.#timer) return;
    const ping = () => {
      this.#notify(['WATCHDOG=1']);
      this.#pings++;
    };
    ping();
    this.#timer = setInterval(ping, this.watchdogIntervalMs);
    this.#timer.unref();
  }

  stopWatchdog(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
