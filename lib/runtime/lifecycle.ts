/**
 * Signal sequencing for a daemon: SIGHUP reloads, SIGTERM/SIGINT drain then exit, a second SIGTERM exits at
 * once. This module only orders the steps and talks to systemd; what a reload or a drain does is the daemon's
 * (a reload must build its new state fully before swapping it in, so a failed reload leaves the old one).
 * Everything is injected, so the ordering is tested without sending signals.
 */

/** The subset of SystemdNotifier the lifecycle drives. */
export interface LifecycleNotifier {
  ready(status?: string): void;
  reloading(status?: string): void;
  stopping(status?: string): void;
}

/** A pino logger fits. */
export interface LifecycleLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface LifecycleHooks {
  /** Re-read config and certificates; throw to keep the old state (the error is logged). */
  reload(): Promise<void> | void;
  /**
   * Stop accepting, let established connections finish until `deadlineMs` (absolute, on the `now` clock),
   * and close what is left when `signal` aborts (the deadline passed).
   */
  drain(deadlineMs: number, signal: AbortSignal): Promise<void> | void;
}

export interface LifecycleOptions {
  notifier: LifecycleNotifier;
  log: LifecycleLog;
  hooks: LifecycleHooks;
  /** Bound on the drain (config drain_timeout). */
  drainTimeoutMs: number;
  /** Default process.exit. */
  exit?: (code: number) => void;
  /** Default Date.now. */
  now?: () => number;
}

/** After the drain deadline: how long the daemon may take to close what is left before the process exits. */
export const CLOSE_GRACE_MS = 2_000;

export type LifecycleState = 'starting' | 'running' | 'stopping';

/** reloaded / failed: this call ran a reload; coalesced: folded into one already running; ignored: stopping. */
export type ReloadOutcome = 'reloaded' | 'failed' | 'coalesced' | 'deferred' | 'ignored';

/** Exit codes: 0 after a drain (even a timed-out one: bounding it is the plan), 1 if drain threw. */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

export class Lifecycle {
  #state: LifecycleState = 'starting';
  #current: Promise<ReloadOutcome> | undefined;
  #pending = false;
  #exited = false;
  #drainAbort: AbortController | undefined;
  readonly #options: LifecycleOptions;
  readonly #exit: (code: number) => void;
  readonly #now: () => number;

  constructor(options: LifecycleOptions) {
    this.#options = options;
    this.#exit = options.exit ?? ((code) => process.exit(code));
    this.#now = options.now ?? Date.now;
  }

  get state(): LifecycleState {
    return this.#state;
  }

  /** Bound on the next drain (config drain_timeout, live: a reload sets it). */
  get drainTimeoutMs(): number {
    return this.#options.drainTimeoutMs;
  }

  set drainTimeoutMs(ms: number) {
    this.#options.drainTimeoutMs = ms;
  }

  /** Startup finished: READY=1; runs a reload that was asked for while starting. */
  ready(status?: string): void {
    if (this.#state !== 'starting') return;
    this.#state = 'running';
    this.#options.notifier.ready(status);
    if (this.#pending) void this.reload();
  }

  /** SIGHUP: one reload at a time; requests during a reload are folded into one more run after it. */
  reload(): Promise<ReloadOutcome> {
    if (this.#state === 'stopping') return Promise.resolve('ignored');
    if (this.#state === 'starting') {
      this.#pending = true;
      this.#options.log.info({ lifecycle: 'reload' }, 'reload requested during startup; will run once ready');
      return Promise.resolve('deferred');
    }
    if (this.#current) {
      this.#pending = true;
      return this.#current.then(() => 'coalesced');
    }
    const run = this.#runReloads().finally(() => {
      this.#current = undefined;
    });
    this.#current = run;
    return run;
  }

  async #runReloads(): Promise<ReloadOutcome> {
    const { notifier, log, hooks } = this.#options;
    let outcome: ReloadOutcome = 'ignored';
    do {
      this.#pending = false;
      notifier.reloading('reloading configuration and certificates');
      const started = this.#now();
      try {
        await hooks.reload();
        outcome = 'reloaded';
        log.info({ lifecycle: 'reload', durationMs: this.#now() - started }, 'reloaded');
      } catch (err) {
        outcome = 'failed';
        log.error({ lifecycle: 'reload', err }, 'reload failed; keeping the previous configuration');
      }
      // After STOPPING=1 systemd must not see READY=1 again.
      if (this.#state === 'stopping') return outcome;
      notifier.ready(outcome === 'reloaded' ? 'running (reloaded)' : 'running (last reload failed; see logs)');
    } while (this.#pending);
    return outcome;
  }

  /**
   * SIGTERM/SIGINT: STOPPING=1, wait for an in-flight reload, drain until the deadline, exit 0. A second
   * call exits at once (128 + signal number). Resolves once exit has been called.
   */
  async stop(reason: string): Promise<void> {
    const { notifier, log, hooks, drainTimeoutMs } = this.#options;
    if (this.#state === 'stopping') {
      log.warn({ lifecycle: 'stop', reason }, 'second stop request: exiting without waiting for the drain');
      this.#exitOnce(SIGNAL_EXIT[reason] ?? 1);
      return;
    }
    this.#state = 'stopping';
    this.#pending = false;
    const started = this.#now();
    const deadlineMs = started + drainTimeoutMs;
    notifier.stopping(`stopping (${reason}): draining for up to ${Math.round(drainTimeoutMs / 1000)}s`);
    log.info({ lifecycle: 'stop', reason, drainTimeoutMs }, 'stopping: draining connections');

    const controller = new AbortController();
    this.#drainAbort = controller;
    const deadline = new Promise<'timeout'>((resolve) => {
      const timer = setTimeout(() => {
        controller.abort();
        resolve('timeout');
      }, drainTimeoutMs);
      controller.signal.addEventListener('abort', () => clearTimeout(timer));
    });
    let code = 0;
    try {
      // A reload in flight finishes (or the deadline passes) before draining starts: no half-swapped state.
      if (this.#current) await Promise.race([this.#current, deadline]);
      const drained = Promise.resolve()
        .then(() => hooks.drain(deadlineMs, controller.signal))
        .then(() => 'drained' as const);
      const result = await Promise.race([drained, deadline]);
      if (result === 'timeout') {
        log.warn({ lifecycle: 'stop', drainTimeoutMs }, 'drain deadline passed; closing what is left');
        // The hook ends what is left once aborted (and records it: audit rows, a closed database); exiting
        // at once would lose that. Bounded, so a hook that hangs cannot hold the exit.
        let grace: NodeJS.Timeout | undefined;
        await Promise.race([
          drained.catch(() => undefined),
          new Promise<void>((resolve) => {
            grace = setTimeout(resolve, CLOSE_GRACE_MS);
          }),
        ]);
        clearTimeout(grace);
      } else {
        log.info({ lifecycle: 'stop', durationMs: this.#now() - started }, 'drained');
      }
    } catch (err) {
      code = 1;
      log.error({ lifecycle: 'stop', err }, 'drain failed');
    } finally {
      controller.abort();
    }
    this.#exitOnce(code);
  }

  #exitOnce(code: number): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#drainAbort?.abort(); // clears the deadline timer when a second signal cuts the drain short
    this.#exit(code);
  }
}

/** The part of `process` used for signals (injectable for tests). */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
}

/** Wires SIGHUP → reload, SIGTERM/SIGINT → stop. Install early: unhandled SIGHUP would kill the process. */
export function installSignalHandlers(lifecycle: Lifecycle, source: SignalSource = process): () => void {
  const onHup = () => void lifecycle.reload();
  const onTerm = () => void lifecycle.stop('SIGTERM');
  const onInt = () => void lifecycle.stop('SIGINT');
  source.on('SIGHUP', onHup);
  source.on('SIGTERM', onTerm);
  source.on('SIGINT', onInt);
  return () => {
    source.off('SIGHUP', onHup);
    source.off('SIGTERM', onTerm);
    source.off('SIGINT', onInt);
  };
}
