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
 *
 * On the SSH side the gateway logs in with user name = its gatewayId and asks for `tcpip-forward` with bind
 * address = its gatewayId (port 0); the proxy opens `forwarded-tcpip` channels to that bind address.
 */
import { type ErrorCode, ErrorCodes } from './errors.js';

export const RELAY_ALPN = 'infisical-relay/1';
/** Inner TLS modes, chosen by ALPN (SPEC §4.4). */
export const MODE_ALPNS = ['tcp', 'http', 'ping', 'health'] as const;
export type ModeAlpn = (typeof MODE_ALPNS)[number];
/** Upper bound of the status line, newline included. */
export const MAX_STATUS_LINE = 512;

export type RelayStatus = { ok: true } | { ok: false; code: ErrorCode; message: string };

export function encodeStatus(status: RelayStatus): Buffer {
  const body = status.ok
    ? { ok: true }
    : { ok: false, code: status.code, message: status.message.slice(0, MAX_STATUS_LINE - 100) };
  return Buffer.from(`${JSON.stringify(body)}\n`, 'utf8');
}

/**
 * Reads the status line from the start of `buf`.
 * Returns null while more bytes are needed; `rest` holds the bytes after the line (the start of the inner TLS).
 */
export function decodeStatus(buf: Buffer): { status: RelayStatus; rest: Buffer } | null {
  const nl = buf.indexOf(0x0a);
  if (nl < 0) {
    if (buf.length >= MAX_STATUS_LINE) return { status: malformed('status line too long'), rest: Buffer.alloc(0) };
    return null;
  }
  const rest = buf.subarray(nl + 1);
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.subarray(0, nl).toString('utf8'));
  } catch {
    return { status: malformed('status line is not JSON'), rest };
  }
  if (typeof parsed !== 'object' || parsed === null) return { status: malformed('status line is not an object'), rest };
  const p = parsed as Record<string, unknown>;
  if (p['ok'] === true) return { status: { ok: true }, rest };
  const code =
    typeof p['code'] === 'string' && p['code'] in ErrorCodes ? (p['code'] as ErrorCode) : 'E_ROUTE_FORBIDDEN';
  const message = typeof p['message'] === 'string' ? p['message'] : ErrorCodes[code];
  return { status: { ok: false, code, message }, rest };
}

function malformed(message: string): RelayStatus {
  return { ok: false, code: 'E_ROUTE_FORBIDDEN', message: `proxy sent a malformed status: ${message}` };
}
