/**
 * SSH wire encoding (RFC 4251 §5): a bounded, strict reader and a small writer.
 * The reader never reads past its buffer and refuses non-canonical mpints, so every
 * parser built on it fails closed with one error type that callers map to E_CERT_MALFORMED.
 */

/** Thrown by SshReader on any malformed input; never escapes the public API. */
export class WireError extends Error {
  override name = 'WireError';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class SshReader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  get offset(): number {
    return this.pos;
  }

  private take(n: number): Buffer {
    if (n > this.remaining) throw new WireError(`need ${n} bytes, ${this.remaining} left`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  u8(): number {
    return this.take(1).readUInt8(0);
  }

  u32(): number {
    return this.take(4).readUInt32BE(0);
  }

  u64(): bigint {
    return this.take(8).readBigUInt64BE(0);
  }

  /** A length-prefixed byte string; the length is checked against what is left before anything is read. */
  string(): Buffer {
    return this.take(this.u32());
  }

  /** A UTF-8 string without NUL bytes (OpenSSH reads names as C strings). */
  text(): string {
    const raw = this.string();
    if (raw.includes(0)) throw new WireError('embedded NUL in string');
    try {
      return utf8.decode(raw);
    } catch {
      throw new WireError('string is not valid UTF-8');
    }
  }

  /** A non-negative mpint in minimal form, returned as unsigned big-endian magnitude (no sign byte). */
  mpint(): Buffer {
    const raw = this.string();
    if (raw.length === 0) return raw;
    if ((raw[0]! & 0x80) !== 0) throw new WireError('negative mpint');
    if (raw[0] === 0) {
      if (raw.length === 1 || (raw[1]! & 0x80) === 0) throw new WireError('non-minimal mpint');
      return raw.subarray(1);
    }
    return raw;
  }

  /** Refuses trailing bytes: a structure must be consumed exactly. */
  end(what = 'structure'): void {
    if (this.remaining !== 0) throw new WireError(`${this.remaining} trailing bytes after ${what}`);
  }
}

export class SshWriter {
  private readonly parts: Buffer[] = [];

  u8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    this.parts.push(b);
    return this;
  }

  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.parts.push(b);
    return this;
  }

  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }

  string(v: Buffer | string): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    this.u32(b.length);
    this.parts.push(b);
    return this;
  }

  /** Writes an unsigned big-endian magnitude as a minimal, positive mpint. */
  mpint(magnitude: Buffer): this {
    let i = 0;
    while (i < magnitude.length && magnitude[i] === 0) i++;
    const m = magnitude.subarray(i);
    if (m.length > 0 && (m[0]! & 0x80) !== 0) return this.string(Buffer.concat([Buffer.from([0]), m]));
    return this.string(m);
  }

  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}
