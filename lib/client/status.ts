/**
 * What `infisical-connect` tells its user: human lines on stderr (with a spinner on long steps when stderr is
 * a terminal), or, with --json, one JSON object per line on stdout for scripts. Errors always name the hop.
 */
import type { Progress } from './connector.js';
import { ConnectError } from './errors.js';
import type { ForwardEvent } from './forward.js';
import type { PingResult } from './ping.js';

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export class StatusReporter {
  readonly #json: boolean;
  readonly #out: Output;
  readonly #err: Output;
  #spin: { timer: NodeJS.Timeout; text: string } | undefined;

  constructor(o: { json: boolean; stdout: Output; stderr: Output }) {
    this.#json = o.json;
    this.#out = o.stdout;
    this.#err = o.stderr;
  }

  /** A structured event: a JSON line with --json, else `human` (when given) on stderr. */
  event(event: string, fields: Record<string, unknown>, human?: string): void {
    if (this.#json) {
      this.#out.write(`${JSON.stringify({ event, time: new Date().toISOString(), ...fields })}\n`);
    } else if (human !== undefined) {
      this.#line(human);
    }
  }

  /** Starts a step that may take a while; the returned function ends it. */
  begin(text: string): () => void {
    if (this.#json) return () => undefined;
    this.#stopSpinner();
    if (!this.#err.isTTY) {
      this.#err.write(`${text}…\n`);
      return () => undefined;
    }
    let i = 0;
    const draw = () => this.#err.write(`\r\x1b[K${SPINNER[i++ % SPINNER.length]} ${text}…`);
    draw();
    this.#spin = { timer: setInterval(draw, 100), text };
    return () => this.#stopSpinner();
  }

  error(err: unknown, context?: string): void {
    const e = err instanceof ConnectError ? err : undefined;
    const code = (err as { code?: string })?.code;
    const fields = {
      code: code ?? 'E_INTERNAL',
      hop: e?.hop ?? null,
      proxyId: e?.proxyId ?? null,
      gatewayId: e?.gatewayId ?? null,
      message: e?.detail ?? (err as Error)?.message ?? String(err),
      attempts: (e?.attempts ?? []).map((a) => ({ code: a.code, hop: a.hop, proxyId: a.proxyId, message: a.detail })),
      ...(context ? { context } : {}),
    };
    const lines = [`${context ? `${context}: ` : ''}${e ? e.describe() : `${code ?? 'error'}: ${fields.message}`}`];
    if (e && e.attempts.length > 1) for (const a of e.attempts) lines.push(`  - ${a.describe()}`);
    this.event('error', fields, lines.join('\n'));
  }

  /** Connector progress (grant, proxies tried). */
  progress = (p: Progress): void => {
    switch (p.step) {
      case 'granted': {
        const left = Math.round((p.expiresAtMs - Date.now()) / 1000);
        this.event(
          'grant',
          { grantId: p.grantId, expiresAt: new Date(p.expiresAtMs).toISOString(), proxies: p.proxies, ms: round(p.ms) },
          `grant ${p.grantId}: valid ${duration(left)}, ${count(p.proxies, 'proxy', 'proxies')} (${round(p.ms)} ms)`,
        );
        return;
      }
      case 'grant-dropped':
        // One line per dropped grant (not per stream): the next streams use the new grant without a word.
        this.event(
          'grant-dropped',
          {
            grantId: p.grantId,
            reason: p.reason,
            code: p.error.code,
            hop: p.error.hop,
            proxyId: p.error.proxyId ?? null,
            message: p.error.detail,
          },
          `grant ${p.grantId} dropped (${p.reason}): ${p.error.describe()} — asking the CA for a new grant`,
        );
        return;
      case 'proxy-failed':
        this.event(
          'proxy-failed',
          { proxyId: p.proxyId, code: p.error.code, hop: p.error.hop, message: p.error.detail, next: p.next },
          `${p.error.describe()}${p.next ? ' — trying the next proxy' : ''}`,
        );
        return;
      default:
        return;
    }
  };

  /** Local forwarder events. */
  forward = (e: ForwardEvent): void => {
    switch (e.type) {
      case 'opened':
        this.event(
          'opened',
          {
            id: e.id,
            proxyId: e.proxyId,
            setupMs: round(e.setupMs),
            warm: e.warm,
            held: e.held,
            resumed: e.resumed,
            outerResumed: e.outerResumed,
            sentFirst: e.sentFirst,
          },
          `[#${e.id}] open via proxy ${e.proxyId} (${round(e.setupMs)} ms${e.held ? ', relay and inner session held ahead' : e.warm ? ', relay opened ahead' : ''})`,
        );
        return;
      case 'failed':
        this.error(e.error, `[#${e.id}]`);
        return;
      case 'closed': {
        // Gateway refusals arrive as errors (its status line); what is left is a target that said nothing.
        const note = e.early ? ' — nothing came back: the target closed the connection without sending a byte' : '';
        this.event(
          'closed',
          {
            id: e.id,
            bytesUp: e.bytesUp,
            bytesDown: e.bytesDown,
            ms: round(e.ms),
            firstByteMs: e.firstByteMs === null ? null : round(e.firstByteMs),
            early: e.early,
          },
          `[#${e.id}] closed after ${(e.ms / 1000).toFixed(1)} s: sent ${bytes(e.bytesUp)}, received ${bytes(e.bytesDown)}${note}`,
        );
        return;
      }
      default:
        return;
    }
  };

  ping = (r: PingResult): void => {
    const rtt = r.rttMs.length ? stats(r.rttMs) : undefined;
    const fields = {
      proxyId: r.proxyId,
      scope: r.scope,
      address: r.address,
      ok: r.ok,
      setupMs: r.setupMs === undefined ? null : round(r.setupMs),
      rttMs: r.rttMs.map(round),
      ...(rtt ? { rtt } : {}),
      ...(r.error ? { code: r.error.code, hop: r.error.hop, message: r.error.detail } : {}),
    };
    const human = r.ok
      ? `proxy ${r.proxyId} (${r.scope}, ${r.address}): setup ${round(r.setupMs ?? 0)} ms, rtt min/avg/max ${rtt?.min}/${rtt?.avg}/${rtt?.max} ms`
      : `proxy ${r.proxyId} (${r.scope}, ${r.address}): ${r.error?.describe()}`;
    this.event('ping', fields, human);
  };

  #line(text: string): void {
    const spin = this.#spin;
    if (spin) this.#err.write('\r\x1b[K');
    this.#err.write(`${text}\n`);
    if (spin) this.#err.write(`${SPINNER[0]} ${spin.text}…`);
  }

  #stopSpinner(): void {
    if (!this.#spin) return;
    clearInterval(this.#spin.timer);
    this.#spin = undefined;
    this.#err.write('\r\x1b[K');
  }
}

const round = (n: number) => Math.round(n * 10) / 10;

function stats(v: number[]): { min: number; avg: number; max: number } {
  return {
    min: round(Math.min(...v)),
    avg: round(v.reduce((a, b) => a + b, 0) / v.length),
    max: round(Math.max(...v)),
  };
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** "1 proxy", "2 proxies", "0 streams". */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function duration(sec: number): string {
  if (sec <= 0) return '0s';
  const m = Math.floor(sec / 60);
  const s = sec % 60;
  return m ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
}
