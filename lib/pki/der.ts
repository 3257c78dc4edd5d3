/**
 * DER building and strict reading on top of forge.asn1, with Buffers at the edges.
 *
 * forge's own OID codec stops at 32-bit (encode) / 53-bit (decode) arcs, and our grant OID has a 128-bit arc
 * (2.25.<uuid>), so OIDs are encoded here with BigInt. Reading is strict: the input must be canonical DER
 * (re-encoding it gives the same bytes), bounded in size, and every reader checks tag and shape.
 */
import forge from 'node-forge';

declare module 'node-forge' {
  namespace asn1 {
    /** What forge's fromDer reads at run time (lib/asn1.js); @types/node-forge declares only the old `strict`. */
    interface FromDerOptions {
      strict?: boolean;
      parseAllBytes?: boolean;
      decodeBitStrings?: boolean;
      maxDepth?: number;
    }
    function fromDer(bytes: Bytes | util.ByteBuffer, options: FromDerOptions): Asn1;
  }
}

const { asn1 } = forge;
export type Node = forge.asn1.Asn1;
const C = asn1.Class;
const T = asn1.Type;

/** Thrown by the readers below; callers turn it into a Verdict with their own code. */
export class DerError extends Error {
  override name = 'DerError';
}

const bin = (b: Buffer): string => b.toString('latin1');
const buf = (s: string): Buffer => Buffer.from(s, 'latin1');

// ---- building ----

export const seq = (...children: Node[]): Node => asn1.create(C.UNIVERSAL, T.SEQUENCE, true, children);
export const set = (...children: Node[]): Node => asn1.create(C.UNIVERSAL, T.SET, true, children);
export const bool = (v: boolean): Node => asn1.create(C.UNIVERSAL, T.BOOLEAN, false, v ? '\xff' : '\x00');
export const nul = (): Node => asn1.create(C.UNIVERSAL, T.NULL, false, '');
export const octets = (b: Buffer): Node => asn1.create(C.UNIVERSAL, T.OCTETSTRING, false, bin(b));
export const utf8 = (s: string): Node => asn1.create(C.UNIVERSAL, T.UTF8, false, bin(Buffer.from(s, 'utf8')));
export const ia5 = (s: string): Node => asn1.create(C.UNIVERSAL, T.IA5STRING, false, s);
export const oid = (dotted: string): Node => asn1.create(C.UNIVERSAL, T.OID, false, bin(encodeOid(dotted)));
/** BIT STRING with no unused bits. */
export const bits = (b: Buffer): Node => asn1.create(C.UNIVERSAL, T.BITSTRING, false, `\x00${bin(b)}`);
/** Context-specific tag [n]; `value` is children (constructed) or raw content bytes (primitive). */
export const ctx = (n: number, value: Node[] | Buffer): Node =>
  Array.isArray(value)
    ? asn1.create(C.CONTEXT_SPECIFIC, n, true, value)
    : asn1.create(C.CONTEXT_SPECIFIC, n, false, bin(value));

/** A non-negative INTEGER, minimally encoded. */
export function uint(v: number | bigint | Buffer): Node {
  let b: Buffer;
  if (Buffer.isBuffer(v)) {
    b = v;
  } else {
    const n = BigInt(v);
    if (n < 0n) throw new RangeError('negative integer');
    let hex = n.toString(16);
    if (hex.length % 2) hex = `0${hex}`;
    b = Buffer.from(hex, 'hex');
  }
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  if (b.length === 0) b = Buffer.from([0]);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return asn1.create(C.UNIVERSAL, T.INTEGER, false, bin(b));
}

/** UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 §4.1.2.5); whole seconds, Zulu. */
export function time(d: Date): Node {
  const iso = new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString(); // 2024-01-02T03:04:05.000Z
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '');
  const year = d.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new RangeError('date out of range');
  return year < 2050
    ? asn1.create(C.UNIVERSAL, T.UTCTIME, false, `${digits.slice(2)}Z`)
    : asn1.create(C.UNIVERSAL, T.GENERALIZEDTIME, false, `${digits}Z`);
}

/** Embeds already-encoded DER (e.g. a SubjectPublicKeyInfo from Node) as a node. */
export function raw(der: Buffer): Node {
  return asn1.fromDer(bin(der), { strict: true, parseAllBytes: true, decodeBitStrings: false });
}

export function encode(node: Node): Buffer {
  return buf(asn1.toDer(node).getBytes());
}

/** A DER tag + definite length header for `len` content bytes. */
export function header(tag: number, len: number): Buffer {
  if (len < 0x80) return Buffer.from([tag, len]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
}

// ---- OIDs (BigInt arcs) ----

const oidCache = new Map<string, Buffer>();

export function encodeOid(dotted: string): Buffer {
  let out = oidCache.get(dotted);
  if (!out) {
    out = encodeOidUncached(dotted);
    if (oidCache.size < 256) oidCache.set(dotted, out);
  }
  return out;
}

function encodeOidUncached(dotted: string): Buffer {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) throw new RangeError(`bad OID ${dotted}`);
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const [first, second] = [arcs[0]!, arcs[1]!];
  if (first < 2n && second > 39n) throw new RangeError(`bad OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [first * 40n + second, ...arcs.slice(2)]) {
    const group: number[] = [];
    let v = arc;
    do {
      group.unshift(Number(v & 0x7fn) | (group.length ? 0x80 : 0));
      v >>= 7n;
    } while (v > 0n);
    out.push(...group);
  }
  return Buffer.from(out);
}

export function decodeOid(content: Buffer): string {
  if (content.length === 0 || content.length > 64) throw new DerError('bad OID length');
  const arcs: bigint[] = [];
  let v = 0n;
  let fresh = true;
  for (const byte of content) {
    if (fresh && byte === 0x80) throw new DerError('non-minimal OID arc');
    v = (v << 7n) | BigInt(byte & 0x7f);
    fresh = (byte & 0x80) === 0;
    if (fresh) {
      arcs.push(v);
      v = 0n;
    }
  }
  if (!fresh) throw new DerError('truncated OID');
  const head = arcs[0]!;
  const prefix = head < 80n ? [head / 40n, head % 40n] : [2n, head - 80n];
  return [...prefix, ...arcs.slice(1)].join('.');
}

// ---- strict reading ----

/** Parses canonical DER of at most `maxBytes`; throws DerError otherwise. */
export function decode(der: Buffer, maxBytes: number): Node {
  if (der.length === 0 || der.length > maxBytes) throw new DerError(`DER size ${der.length} outside 1..${maxBytes}`);
  let node: Node;
  try {
    node = asn1.fromDer(bin(der), {
      strict: true,
      parseAllBytes: true,
      decodeBitStrings: false,
      maxDepth: 16,
    });
  } catch (err) {
    throw new DerError(`not DER: ${(err as Error).message}`);
  }
  // BER leniencies (indefinite or long-form lengths, padded integers) do not survive a round trip.
  if (!encode(node).equals(der)) throw new DerError('not canonical DER');
  return node;
}

function isUniversal(n: Node | undefined, type: number, constructed: boolean): n is Node {
  return !!n && n.tagClass === C.UNIVERSAL && n.type === type && n.constructed === constructed;
}

export function children(n: Node | undefined, what: string, min = 0, max = 1024): Node[] {
  if (!isUniversal(n, T.SEQUENCE, true) && !isUniversal(n, T.SET, true)) throw new DerError(`${what}: not a SEQUENCE`);
  const list = n!.value as Node[];
  if (list.length < min || list.length > max) throw new DerError(`${what}: ${list.length} elements`);
  return list;
}

export function readSeq(n: Node | undefined, what: string, min = 0, max = 1024): Node[] {
  if (!isUniversal(n, T.SEQUENCE, true)) throw new DerError(`${what}: not a SEQUENCE`);
  return children(n, what, min, max);
}

export function readOid(n: Node | undefined, what: string): string {
  if (!isUniversal(n, T.OID, false)) throw new DerError(`${what}: not an OID`);
  return decodeOid(buf(n.value as string));
}

/** INTEGER content bytes (two's complement, as encoded). */
export function readIntBytes(n: Node | undefined, what: string): Buffer {
  if (!isUniversal(n, T.INTEGER, false)) throw new DerError(`${what}: not an INTEGER`);
  const b = buf(n.value as string);
  if (b.length === 0) throw new DerError(`${what}: empty INTEGER`);
  return b;
}

/** A non-negative INTEGER that fits a safe JS number. */
export function readUint(n: Node | undefined, what: string): number {
  const b = readIntBytes(n, what);
  if (b[0]! & 0x80) throw new DerError(`${what}: negative`);
  if (b.length > 7) throw new DerError(`${what}: too large`);
  const v = Number(BigInt(`0x${b.toString('hex')}`));
  if (!Number.isSafeInteger(v)) throw new DerError(`${what}: too large`);
  return v;
}

export function readBool(n: Node | undefined, what: string): boolean {
  if (!isUniversal(n, T.BOOLEAN, false) || (n.value as string).length !== 1)
    throw new DerError(`${what}: not a BOOLEAN`);
  const v = (n.value as string).charCodeAt(0);
  if (v !== 0 && v !== 0xff) throw new DerError(`${what}: non-DER BOOLEAN`);
  return v === 0xff;
}

export function readOctets(n: Node | undefined, what: string): Buffer {
  if (!isUniversal(n, T.OCTETSTRING, false)) throw new DerError(`${what}: not an OCTET STRING`);
  return buf(n.value as string);
}

/** BIT STRING content without the unused-bits byte, plus that count. */
export function readBits(n: Node | undefined, what: string): { bytes: Buffer; unused: number } {
  if (!isUniversal(n, T.BITSTRING, false)) throw new DerError(`${what}: not a BIT STRING`);
  const b = buf(n.value as string);
  if (b.length === 0 || b[0]! > 7 || (b.length === 1 && b[0] !== 0)) throw new DerError(`${what}: bad BIT STRING`);
  return { bytes: b.subarray(1), unused: b[0]! };
}

/** UTF8String, checked to be valid UTF-8, with a length bound in bytes. */
export function readUtf8(n: Node | undefined, what: string, maxBytes: number): string {
  if (!isUniversal(n, T.UTF8, false)) throw new DerError(`${what}: not a UTF8String`);
  return utf8Content(buf(n.value as string), what, maxBytes);
}

export function utf8Content(b: Buffer, what: string, maxBytes: number): string {
  if (b.length > maxBytes) throw new DerError(`${what}: longer than ${maxBytes}`);
  const s = b.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(b)) throw new DerError(`${what}: invalid UTF-8`);
  return s;
}

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), the only forms RFC 5280 allows. */
export function readTime(n: Node | undefined, what: string): Date {
  const s = n && n.tagClass === C.UNIVERSAL && !n.constructed ? (n.value as string) : '';
  let full: string | undefined;
  if (n?.type === T.UTCTIME && /^[0-9]{12}Z$/.test(s)) {
    const yy = Number(s.slice(0, 2));
    full = `${yy < 50 ? 20 : 19}${s}`;
  } else if (n?.type === T.GENERALIZEDTIME && /^[0-9]{14}Z$/.test(s)) {
    full = s;
  }
  if (!full) throw new DerError(`${what}: not a UTCTime/GeneralizedTime`);
  const iso = `${full.slice(0, 4)}-${full.slice(4, 6)}-${full.slice(6, 8)}T${full.slice(8, 10)}:${full.slice(10, 12)}:${full.slice(12, 14)}Z`;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime()) || d.toISOString().slice(0, 19) !== iso.slice(0, 19)) {
    throw new DerError(`${what}: invalid date`);
  }
  return d;
}

/** Context-specific [tag] of the expected form; returns the node. */
export function readCtx(n: Node | undefined, tag: number, constructed: boolean, what: string): Node {
  if (!n || n.tagClass !== C.CONTEXT_SPECIFIC || n.type !== tag || n.constructed !== constructed) {
    throw new DerError(`${what}: expected [${tag}]`);
  }
  return n;
}

export function isCtx(n: Node | undefined, tag: number): boolean {
  return !!n && n.tagClass === C.CONTEXT_SPECIFIC && n.type === tag;
}

/** Raw content bytes of a primitive node. */
export function content(n: Node): Buffer {
  if (n.constructed) throw new DerError('expected a primitive value');
  return buf(n.value as string);
}

/**
 * The raw bytes of the first element inside a top-level SEQUENCE (e.g. the TBSCertificate inside a
 * Certificate): signatures cover these exact bytes, so they are sliced, not re-encoded.
 */
export function firstElementBytes(der: Buffer): Buffer {
  const outer = tlvHeader(der, 0);
  const inner = tlvHeader(der, outer.headerLen);
  return der.subarray(outer.headerLen, outer.headerLen + inner.headerLen + inner.len);
}

function tlvHeader(b: Buffer, at: number): { headerLen: number; len: number } {
  if (at + 2 > b.length) throw new DerError('truncated');
  const first = b[at + 1]!;
  if (first < 0x80) return { headerLen: 2, len: first };
  const n = first & 0x7f;
  if (n === 0 || n > 4 || at + 2 + n > b.length) throw new DerError('bad length');
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + b[at + 2 + i]!;
  if (at + 2 + n + len > b.length) throw new DerError('truncated');
  return { headerLen: 2 + n, len };
}
