/**
 * What the platform, the proxy and the gateway agree on for a relayed stream.
 *
 *   platform ──outer TLS (ALPN RELAY_ALPN)──► proxy ──forwarded-tcpip on the gateway's SSH tunnel──► gateway
 *
 * 1. The platform opens the outer mTLS session to the proxy, offering ALPN `RELAY_ALPN`.
 * 2. The proxy decides (route extension of the outer cert, tunnel table) and writes ONE status line:
 *    `{"ok":true}\n` then pipes bytes both ways, or `{"ok":false,"code":"E_…","message":"…"}\n` and closes.
 *    The line lets a client show a fast, clear refusal (gateway offline, route forbidden) instead of a hang.
 * 3. Inside the piped bytes the platform runs the inner mTLS session with the gateway; its ALPN picks the mode.
 * 4. In the modes of STATUS_MODES (`tcp`, `ping`, `health`) the gateway writes ONE status line of the same
 *    codec INSIDE the inner TLS, before any payload: `{"ok":true}\n` once the stream is wired (in `tcp`, once the
 *    target accepted the connection), or a refusal (E_GRANT_EXPIRED, E_GRANT_TARGET, E_TARGET_NOT_ALLOWED,
 *    E_TARGET_UNREACHABLE, E_CERT_REVOKED, E_SUBJECT_REVOKED, E_LIMIT, …) and closes. Its message names only what
 *    the grant holder asked for (never an address a name resolved to). A client certificate that does not
 *    chain to the org's gateway client CA, or carries no grant, is refused by a close without a line.
 *    In `http` mode there is no line: the gateway speaks HTTP and answers refusals as HTTP responses (403 for
 *    the grant or the allowlist, 502 for an unreachable target, 503 at its stream limit) whose JSON body and
 *    `x-infisical-error` header carry the code.
 *
 * 5. `<mode>+go` (GO_ALPNS: `tcp+go`, `ping+go`) is that mode with its start deferred: the gateway lists each
 *    right before its plain mode (a client offering both gets it from a new gateway, the plain mode from an older
 *    one or from a gateway whose operator turned held sessions off: `hold_inner_sessions`), admits the session at
 *    its handshake as in the plain mode, then holds it until the platform's one byte GO (0x01), judges the grant
 *    again at that moment and only then runs the mode (tcp: dials the target; ping: echoes) and writes its status
 *    line; the bytes after GO are the stream's first bytes. So a platform can run the inner handshake ahead of
 *    need without a target connection or a stream nobody asked for. It is its plain mode for the grant
 *    (modeOfAlpn): it never allows more than that mode. Only modes with a status line per stream have one;
 *    `http` answers as HTTP and `health` is one document, so neither is held.
 *
 * On the SSH side the gateway logs in with user name = its gatewayId and asks for `tcpip-forward` with bind
 * address = its gatewayId (port 0); the proxy opens `forwarded-tcpip` channels to that bind address.
 */
import { type ErrorCode, ErrorCodes, isErrorCode } from '../errors/codes.js';

export const RELAY_ALPN = 'infisical-relay/1';
/** Inner TLS modes, chosen by ALPN (SPEC §4.4). */
export const MODE_ALPNS = ['tcp', 'http', 'ping', 'health'] as const;
export type ModeAlpn = (typeof MODE_ALPNS)[number];
/** Modes whose inner session can be held until the platform's GO byte (step 5 above). */
export const GO_MODES = ['tcp', 'ping'] as const;
export type GoMode = (typeof GO_MODES)[number];
/** The held variant of each mode of GO_MODES (step 5 above). */
export const GO_ALPNS: Readonly<Record<GoMode, string>> = { tcp: 'tcp+go', ping: 'ping+go' };
/** The one byte that starts a held stream. */
export const GO_BYTE = 0x01;

/** True for the held variant of a mode (`tcp+go`, `ping+go`). */
export function isGoAlpn(alpn: string | false | null | undefined): boolean {
  return typeof alpn === 'string' && (Object.values(GO_ALPNS) as string[]).includes(alpn);
}

/** The held variant of `mode`, or undefined for a mode that is never held. */
export function goAlpnOf(mode: string): string | undefined {
  return (GO_MODES as readonly string[]).includes(mode) ? GO_ALPNS[mode as GoMode] : undefined;
}

/**
 * What the gateway's inner server offers, in its order of preference: each held variant right before its plain
 * mode, or the plain modes alone when the gateway holds no sessions (config `hold_inner_sessions = false`).
 */
export function innerServerAlpns(holdSessions: boolean): string[] {
  return MODE_ALPNS.flatMap((mode) => {
    const go = holdSessions ? goAlpnOf(mode) : undefined;
    return go ? [go, mode] : [mode];
  });
}

/** The grant mode an inner ALPN stands for (`<mode>+go` is `<mode>`), or undefined for an unknown one. */
export function modeOfAlpn(alpn: string | false | null | undefined): ModeAlpn | undefined {
  if (!alpn) return undefined;
  for (const mode of GO_MODES) if (alpn === GO_ALPNS[mode]) return mode;
  return (MODE_ALPNS as readonly string[]).includes(alpn) ? (alpn as ModeAlpn) : undefined;
}
/** Modes in which the gateway writes a status line inside the inner TLS (step 4 above). */
export const STATUS_MODES: readonly ModeAlpn[] = ['tcp', 'ping', 'health'];
/** Upper bound of the status line, newline included. */
export const MAX_STATUS_LINE = 512;

export type RelayStatus = { ok: true } | { ok: false; code: ErrorCode; message: string };

/** Who wrote a status line: decides the code a malformed or unknown line is read as. */
export type StatusPeer = 'proxy' | 'gateway';

export function modeHasStatus(mode: string): boolean {
  return (STATUS_MODES as readonly string[]).includes(mode);
}

/** One line of at most MAX_STATUS_LINE bytes: a long message is cut until the encoded line fits. */
export function encodeStatus(status: RelayStatus): Buffer {
  if (status.ok) return Buffer.from('{"ok":true}\n', 'utf8');
  let message = status.message.slice(0, MAX_STATUS_LINE - 100);
  for (;;) {
    const line = Buffer.from(`${JSON.stringify({ ok: false, code: status.code, message })}\n`, 'utf8');
    if (line.length <= MAX_STATUS_LINE || message.length === 0) return line;
    message = message.slice(0, Math.max(0, message.length - (line.length - MAX_STATUS_LINE) - 1));
  }
}

/**
 * Reads the status line from the start of `buf`.
 * Returns null while more bytes are needed; `rest` holds the bytes after the line (the start of the inner TLS,
 * or the first payload bytes when the gateway wrote the line).
 */
export function decodeStatus(buf: Buffer, from: StatusPeer = 'proxy'): { status: RelayStatus; rest: Buffer } | null {
  const nl = buf.indexOf(0x0a);
  if (nl < 0) {
    if (buf.length >= MAX_STATUS_LINE)
      return { status: malformed(from, 'status line too long'), rest: Buffer.alloc(0) };
    return null;
  }
  const rest = buf.subarray(nl + 1);
  // The bound holds whether the newline arrived or not: a longer line is never parsed.
  if (nl >= MAX_STATUS_LINE) return { status: malformed(from, 'status line too long'), rest };
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.subarray(0, nl).toString('utf8'));
  } catch {
    return { status: malformed(from, 'status line is not JSON'), rest };
  }
  if (typeof parsed !== 'object' || parsed === null) {
    return { status: malformed(from, 'status line is not an object'), rest };
  }
  const p = parsed as Record<string, unknown>;
  if (p['ok'] === true) return { status: { ok: true }, rest };
  const known = isErrorCode(p['code']);
  const code = known ? (p['code'] as ErrorCode) : fallbackCode(from);
  const text = typeof p['message'] === 'string' ? p['message'] : ErrorCodes[code];
  const message = known || typeof p['code'] !== 'string' ? text : `${p['code']}: ${text}`;
  return { status: { ok: false, code, message }, rest };
}

/** A line we cannot read is a refusal, never acceptance: the proxy's as a route refusal, the gateway's as a close. */
function fallbackCode(from: StatusPeer): ErrorCode {
  return from === 'proxy' ? 'E_ROUTE_FORBIDDEN' : 'E_STREAM_CLOSED';
}

function malformed(from: StatusPeer, message: string): RelayStatus {
  return { ok: false, code: fallbackCode(from), message: `${from} sent a malformed status: ${message}` };
}
