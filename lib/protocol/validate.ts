/**
 * A small strict validator for JSON request bodies: exact types, bounded sizes, unknown fields refused.
 * Schemas are plain data so that the API's shape can be read in one place (lib/protocol/api.ts).
 */
import { accept, refuse, type Verdict } from '../errors/codes.js';

export type Schema =
  | { type: 'string'; min?: number; max: number; pattern?: RegExp; optional?: boolean }
  | { type: 'int'; min: number; max: number; optional?: boolean }
  | { type: 'bool'; optional?: boolean }
  | { type: 'enum'; values: readonly string[]; optional?: boolean }
  | { type: 'array'; items: Schema; max: number; min?: number; optional?: boolean }
  | { type: 'object'; fields: Record<string, Schema>; optional?: boolean };

/** Maps a schema to the TypeScript type it accepts. */
export type Infer<S extends Schema> = S extends { type: 'string' }
  ? string
  : S extends { type: 'int' }
    ? number
    : S extends { type: 'bool' }
      ? boolean
      : S extends { type: 'enum'; values: readonly (infer V)[] }
        ? V
        : S extends { type: 'array'; items: infer I extends Schema }
          ? Infer<I>[]
          : S extends { type: 'object'; fields: infer F extends Record<string, Schema> }
            ? { [K in keyof F as F[K] extends { optional: true } ? never : K]: Infer<F[K]> } & {
                [K in keyof F as F[K] extends { optional: true } ? K : never]?: Infer<F[K]>;
              }
            : never;

const MAX_DEPTH = 8;

/** Checks `value` against `schema`; the refusal names the offending field path. */
export function validate<S extends Schema>(schema: S, value: unknown): Verdict<Infer<S>> {
  const problem = check(schema, value, '$', 0);
  return problem === null ? accept(value as Infer<S>) : refuse('E_REQUEST_INVALID', problem);
}

function check(schema: Schema, value: unknown, path: string, depth: number): string | null {
  if (depth > MAX_DEPTH) return `${path}: nested too deep`;
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') return `${path}: expected a string`;
      if (value.length > schema.max) return `${path}: longer than ${schema.max} characters`;
      if (value.length < (schema.min ?? 1)) return `${path}: shorter than ${schema.min ?? 1} characters`;
      if (schema.pattern && !schema.pattern.test(value)) return `${path}: does not match ${schema.pattern}`;
      return null;
    case 'int':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) return `${path}: expected an integer`;
      if (value < schema.min || value > schema.max) return `${path}: outside ${schema.min}..${schema.max}`;
      return null;
    case 'bool':
      return typeof value === 'boolean' ? null : `${path}: expected true or false`;
    case 'enum':
      return typeof value === 'string' && schema.values.includes(value)
        ? null
        : `${path}: expected one of ${schema.values.join(', ')}`;
    case 'array': {
      if (!Array.isArray(value)) return `${path}: expected an array`;
      if (value.length > schema.max) return `${path}: more than ${schema.max} items`;
      if (value.length < (schema.min ?? 0)) return `${path}: fewer than ${schema.min ?? 0} items`;
      for (let i = 0; i < value.length; i++) {
        const p = check(schema.items, value[i], `${path}[${i}]`, depth + 1);
        if (p) return p;
      }
      return null;
    }
    case 'object': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return `${path}: expected an object`;
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record)) {
        if (!Object.hasOwn(schema.fields, key)) return `${path}.${key}: unknown field`;
      }
      for (const [key, sub] of Object.entries(schema.fields)) {
        if (record[key] === undefined) {
          if (!sub.optional) return `${path}.${key}: required`;
          continue;
        }
        const p = check(sub, record[key], `${path}.${key}`, depth + 1);
        if (p) return p;
      }
      return null;
    }
  }
}
