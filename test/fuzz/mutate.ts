/**
 * Mutations of seed bytes, as fast-check arbitraries (so every input is reproducible from the run's seed):
 * bit flips, truncation, length fields inflated (SSH's u32 and DER's long-form lengths, up to 4 GiB), bytes
 * inserted, deleted, duplicated and overwritten with boundary values. Each input gets one to six of them.
 */
import fc from 'fast-check';

/** Length values that break parsers: zero, off by one, sign bits, "4 GiB". */
const BIG_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];
const BOUNDARY_BYTES = [0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff];

/** A random tape: the mutation functions read their choices from it, so fast-check can replay and shrink it. */
class Tape {
  #i = 0;
  constructor(private readonly values: readonly number[]) {}
  next(mod: number): number {
    const v = this.values[this.#i++ % this.values.length] ?? 0;
    return mod <= 0 ? 0 : v % mod;
  }
}

type Mutation = (b: Buffer, t: Tape) => Buffer;

const MUTATIONS: Mutation[] = [
  // flip one bit
  (b, t) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    const i = t.next(out.length);
    out[i] = out[i]! ^ (1 << t.next(8));
    return out;
  },
  // truncate
  (b, t) => b.subarray(0, t.next(b.length + 1)),
  // SSH length field inflation: overwrite a u32 with a huge or off-by-one value
  (b, t) => {
    if (b.length < 4) return b;
    const out = Buffer.from(b);
    const at = t.next(out.length - 3);
    const current = out.readUInt32BE(at);
    const choices = [...BIG_U32, current + 1, current + 4, Math.max(0, current - 1)];
    out.writeUInt32BE(choices[t.next(choices.length)]! >>> 0, at);
    return out;
  },
  // DER length inflation: a length byte becomes long form (0x84 + 4 bytes, up to 4 GiB) or indefinite (0x80)
  (b, t) => {
    if (b.length < 2) return b;
    const at = 1 + t.next(b.length - 1);
    const form = t.next(3);
    const len =
      form === 0
        ? Buffer.from([0x80])
        : form === 1
          ? Buffer.from([0x84, 0xff, 0xff, 0xff, 0xff])
          : Buffer.from([0x84, 0, 0, 0, b[at]!]);
    return Buffer.concat([b.subarray(0, at), len, b.subarray(at + 1)]);
  },
  // insert random bytes
  (b, t) => {
    const at = t.next(b.length + 1);
    const n = 1 + t.next(16);
    const bytes = Buffer.from(Array.from({ length: n }, () => t.next(256)));
    return Buffer.concat([b.subarray(0, at), bytes, b.subarray(at)]);
  },
  // delete a range
  (b, t) => {
    const at = t.next(b.length + 1);
    const n = 1 + t.next(32);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
  },
  // duplicate a range (repeated fields, nested structures twice)
  (b, t) => {
    if (b.length === 0) return b;
    const from = t.next(b.length);
    const n = 1 + t.next(Math.min(256, b.length - from));
    const at = t.next(b.length + 1);
    return Buffer.concat([b.subarray(0, at), b.subarray(from, from + n), b.subarray(at)]);
  },
  // overwrite a byte with a boundary value
  (b, t) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    out[t.next(out.length)] = BOUNDARY_BYTES[t.next(BOUNDARY_BYTES.length)]!;
    return out;
  },
];

/** Applies 1..6 mutations chosen from the tape. */
export function mutate(seed: Uint8Array, tape: readonly number[]): Buffer {
  const t = new Tape(tape.length > 0 ? tape : [0]);
  let b: Buffer = Buffer.from(seed);
  const count = 1 + t.next(6);
  for (let k = 0; k < count; k++) b = MUTATIONS[t.next(MUTATIONS.length)]!(b, t);
  return b;
}

const tape = fc.array(fc.nat({ max: 0xffffffff }), { minLength: 4, maxLength: 48 });

/** Mutants of the given seeds; now and then a seed unchanged, so the valid path stays covered. */
export function mutants(seeds: readonly Uint8Array[]): fc.Arbitrary<Buffer> {
  if (seeds.length === 0) throw new Error('mutants: no seeds');
  return fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom(...seeds).map((s) => Buffer.from(s)) },
    { weight: 12, arbitrary: fc.tuple(fc.nat({ max: seeds.length - 1 }), tape).map(([i, t]) => mutate(seeds[i]!, t)) },
  );
}

/** Random bytes, short and long. */
export const randomBytes = (maxLength = 4096): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));

/** Mutants of text: the same mutations on the UTF-8 bytes, read back as UTF-8 (invalid sequences become U+FFFD). */
export function textMutants(seeds: readonly string[]): fc.Arbitrary<string> {
  return mutants(seeds.map((s) => new Uint8Array(Buffer.from(s, 'utf8')))).map((b) => b.toString('utf8'));
}

/** Strings that probe prototype lookups, encodings and number parsing. */
export const HOSTILE_WORDS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '',
  ' ',
  '\u0000',
  '\uFEFF',
  '\uD800',
  '-',
  '--',
  '.',
  '..',
  '%',
  '1e309',
  '-0',
  'NaN',
  'Infinity',
  '0x10',
  '99999999999999999999',
  'a'.repeat(300),
];

export const hostileString = fc.oneof(
  fc.constantFrom(...HOSTILE_WORDS),
  fc.string({ maxLength: 40 }),
  fc.fullUnicodeString({ maxLength: 40 }),
);
