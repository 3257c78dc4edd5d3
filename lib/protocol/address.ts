/**
 * IP addresses and CIDRs as policy inputs, read one way by the gateway allowlist (lib/gateway/allowlist.ts) and
 * the CA access policy (lib/ca/policy.ts). Pure; no resolution.
 *
 * The rule: an IPv4 destination is judged by IPv4 rules only, whatever notation reaches us.
 *  - Targets: IPv4-mapped (::ffff:a.b.c.d, also written ::ffff:7f00:1) and IPv4-compatible (::a.b.c.d,
 *    deprecated) addresses are read as the plain IPv4 address, and that IPv4 address is what gets dialled.
 *    (:: and ::1 stay IPv6: they are the unspecified and loopback addresses, not compatible ones.)
 *  - CIDR entries: a mapped entry that names IPv4 network bits (prefix > 96) IS an IPv4 rule written in IPv6
 *    notation and is converted: ::ffff:10.0.0.0/104 is 10.0.0.0/8. Every other IPv6 entry stays an IPv6 rule and
 *    matches IPv6 destinations only — so ::/0 and ::ffff:0:0/96 (which names no IPv4 bits) admit no IPv4 at all;
 *    admitting every IPv4 address has to be written 0.0.0.0/0.
 *  - Zones (fe80::1%eth0) are refused, not stripped: the zone picks the interface the packet leaves by, which no
 *    rule here speaks about, so a zoned address cannot be judged by an address rule.
 */
import { isIP } from 'node:net';

export interface IpAddress {
  family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
  /** Dotted quad for IPv4; the lower-cased literal for IPv6. */
  text: string;
}

export interface IpCidr {
  family: 4 | 6;
  /** Network bytes with the host bits cleared. */
  bytes: Uint8Array;
  prefix: number;
}

/** Why a text is not a usable address: not an IP literal at all, or one carrying a zone. */
export type AddressProblem = 'not-ip' | 'zoned';

/** Reads an IP literal and folds IPv4-mapped and IPv4-compatible forms to IPv4. */
export function readAddress(text: string): IpAddress | AddressProblem {
  const family = isIP(text);
  if (family === 0) return 'not-ip';
  if (text.includes('%')) return 'zoned';
  if (family === 4) return { family: 4, bytes: ipv4Bytes(text), text };
  const bytes = ipv6Bytes(text);
  const v4 = embeddedIpv4(bytes);
  if (v4) return { family: 4, bytes: v4, text: v4.join('.') };
  return { family: 6, bytes, text: text.toLowerCase() };
}

/** Reads "address[/prefix]" (no prefix: a single address); a mapped entry with prefix > 96 becomes IPv4. */
export function readCidr(text: string): IpCidr | AddressProblem {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(text);
  if (!m) return 'not-ip';
  const family = isIP(m[1]!);
  if (family === 0) return 'not-ip';
  if (m[1]!.includes('%')) return 'zoned';
  const max = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return 'not-ip';
  if (family === 4) return { family: 4, bytes: mask(ipv4Bytes(m[1]!), prefix), prefix };
  const bytes = ipv6Bytes(m[1]!);
  if (prefix > 96 && isMapped(bytes))
    return { family: 4, bytes: mask(bytes.slice(12), prefix - 96), prefix: prefix - 96 };
  return { family: 6, bytes: mask(bytes, prefix), prefix };
}

/** Same family and the first `prefix` bits equal. An IPv6 CIDR never contains an IPv4 address. */
export function cidrContains(cidr: IpCidr, address: IpAddress): boolean {
  if (cidr.family !== address.family) return false;
  const masked = mask(address.bytes, cidr.prefix);
  return masked.every((b, i) => b === cidr.bytes[i]);
}

export function sameAddress(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.bytes.every((x, i) => x === b.bytes[i]);
}

function isMapped(b: Uint8Array): boolean {
  return b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

function embeddedIpv4(b: Uint8Array): Uint8Array | undefined {
  if (isMapped(b)) return b.slice(12);
  const compatible = b.subarray(0, 12).every((x) => x === 0);
  // ::0.0.0.0 and ::0.0.0.1 are :: and ::1, which are IPv6 addresses in their own right.
  const unspecOrLoopback = b[12] === 0 && b[13] === 0 && b[14] === 0 && (b[15] === 0 || b[15] === 1);
  return compatible && !unspecOrLoopback ? b.slice(12) : undefined;
}

function ipv4Bytes(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

/** `text` is a valid IPv6 literal without a zone (isIP said so). */
function ipv6Bytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  let s = text.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    out.set(ipv4Bytes(dotted[1]!), 12);
    s = `${s.slice(0, -dotted[1]!.length)}0:0`;
  }
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => {
    if (dotted && i >= 6) return;
    const v = Number.parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

function mask(bytes: Uint8Array, prefix: number): Uint8Array {
  return bytes.map((b, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return bits === 0 ? 0 : b & (0xff << (8 - bits)) & 0xff;
  });
}
