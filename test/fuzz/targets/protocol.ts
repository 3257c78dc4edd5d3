/**
 * What crosses the network as text: CA API request lines and bodies (lib/ca/routes.ts over lib/protocol/api.ts
 * and validate.ts), the signed revocation feed (lib/protocol/api.ts verifyRevocationFeed, read by
 * lib/enrolled/feed.ts), relay status lines (lib/protocol/relay.ts) and addresses (lib/protocol/address.ts).
 */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import fc from 'fast-check';
import { parseRequestBody, proxiesVersionOf, ROUTES, routeRequest, sinceOf, waitOf } from '../../../lib/ca/routes.js';
import { ErrorCodes } from '../../../lib/errors/codes.js';
import { cidrContains, readAddress, readCidr } from '../../../lib/protocol/address.js';
import {
  REVOCATION_KINDS,
  type RevocationFeed,
  revocationFeedBytes,
  verifyRevocationFeed,
} from '../../../lib/protocol/api.js';
import { decodeStatus, encodeStatus, MAX_STATUS_LINE } from '../../../lib/protocol/relay.js';
import type { Schema } from '../../../lib/protocol/validate.js';
import { HOSTILE_WORDS, hostileString, textMutants } from '../mutate.js';
import type { FuzzTarget } from '../target.js';
import { validId } from './grant.js';

// ---- CA API ------------------------------------------------------------------------------------------------

const TOKEN = fc.stringMatching(/^[A-Za-z0-9_-]{16,40}$/);

/** Values shaped by a schema, most of them valid, with hostile leaves mixed in. */
function fromSchema(schema: Schema, depth = 0): fc.Arbitrary<unknown> {
  const leaf = fc.oneof(hostileString, fc.integer(), fc.double(), fc.boolean(), fc.constant(null));
  const valid = (() => {
    switch (schema.type) {
      case 'string':
        return schema.pattern
          ? fc.oneof(validId, TOKEN, fc.constantFrom('127.0.0.1:22', '[::1]:443', 'h.example'))
          : fc.string({ maxLength: Math.min(schema.max + 2, 300) });
      case 'int':
        return fc.oneof(
          fc.integer({ min: schema.min, max: schema.max }),
          fc.constantFrom(schema.min - 1, schema.max + 1, 1.5),
        );
      case 'bool':
        return fc.boolean();
      case 'enum':
        return fc.constantFrom(...schema.values, 'other');
      case 'array':
        return depth > 6
          ? fc.constant([])
          : fc.array(fromSchema(schema.items, depth + 1), { maxLength: Math.min(schema.max + 1, 8) });
      case 'object': {
        if (depth > 6) return fc.constant({});
        const fields = Object.fromEntries(Object.entries(schema.fields).map(([k, s]) => [k, fromSchema(s, depth + 1)]));
        return fc
          .tuple(
            fc.record(fields, { requiredKeys: [] }),
            fc.dictionary(fc.constantFrom(...HOSTILE_WORDS), leaf, { maxKeys: 1 }),
          )
          .map(([known, extra]) => ({ ...known, ...extra }));
      }
    }
  })();
  return fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: leaf });
}

const bodyRoutes = ROUTES.filter((r) => r.body);

interface ApiInput {
  method: string;
  target: string;
  body: string;
}

export const caApi: FuzzTarget<ApiInput> = {
  name: 'ca-api-request',
  covers: 'lib/ca/routes routeRequest, parseRequestBody (JSON + lib/protocol/validate + refinements), query readers',
  arbitrary: () => {
    const targets = ROUTES.map((r) => r.path.replace(/:([A-Za-z]+)/g, 'org-a'));
    const target = fc.oneof(
      fc
        .tuple(
          fc.constantFrom(...targets),
          fc.constantFrom('', '?since=5', '?since=-1&wait=99', '?proxies=%00', '?wait=1e3'),
        )
        .map(([p, q]) => p + q),
      fc.constantFrom(
        '//[',
        '//a:b@[/v1/health',
        '/../v1/health',
        '/v1/orgs/..',
        '/v1/orgs/%2e%2e',
        '/',
        '*',
        '/v1/health#x',
      ),
      fc.string({ maxLength: 80 }).map((s) => `/${s}`),
      textMutants(targets),
    );
    const body = fc.oneof(
      fc.oneof(...bodyRoutes.map((r) => fromSchema(r.body!))).map((v) => JSON.stringify(v)),
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      fc.constantFrom(
        '',
        '{',
        '[]',
        'null',
        '{"__proto__":{"x":1}}',
        '{"constructor":{}}',
        `${'['.repeat(5000)}${']'.repeat(5000)}`,
      ),
      fc.string({ maxLength: 100 }),
    );
    return fc.record({ method: fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'get', ''), target, body });
  },
  run: (input) => {
    const routed = routeRequest(input.method, input.target);
    if (!routed.ok) return routed;
    for (const read of [sinceOf, waitOf, proxiesVersionOf]) {
      const v = read(routed.url.searchParams);
      if (!v.ok) return v;
    }
    return parseRequestBody(routed.route, Buffer.from(input.body, 'utf8'));
  },
  check: (_input, outcome) => {
    if (outcome.threw) return undefined;
    const v = outcome.value as { ok: boolean; value?: unknown };
    if (!v.ok || v.value === undefined) return undefined;
    // An accepted body was JSON and has only fields its schema names (checked again on the JSON round trip).
    const again = JSON.stringify(v.value);
    return again === undefined ? 'accepted body is not JSON' : undefined;
  },
};

// ---- the signed revocation feed ------------------------------------------------------------------------------

let feedKey: { privateKey: KeyObject; publicKey: KeyObject } | undefined;
const keyPair = () => {
  feedKey ??= generateKeyPairSync('ed25519');
  return feedKey;
};

const entry = fc.record({
  seq: fc.oneof(fc.nat(), fc.constantFrom(-1, 1.5, '3', null)),
  kind: fc.oneof(fc.constantFrom(...REVOCATION_KINDS), hostileString),
  orgId: fc.oneof(fc.constant(null), validId, fc.integer()),
  subject: fc.oneof(validId, fc.constant(undefined), fc.integer()),
  at: fc.oneof(
    fc.date().map((d) => (Number.isNaN(d.getTime()) ? 'x' : d.toISOString())),
    fc.integer(),
  ),
});
const proxy = fc.record({
  proxyId: validId,
  scope: fc.constantFrom('instance', 'org', 'other'),
  hostname: fc.domain(),
  hostnames: fc.oneof(fc.array(fc.domain(), { maxLength: 3 }), fc.constant('h')),
  sshAddress: fc.constantFrom('127.0.0.1:22', 'x'),
  tlsAddress: fc.constantFrom('127.0.0.1:443', 3),
});
const feedLike = fc.record(
  {
    since: fc.oneof(fc.nat(), fc.constantFrom(-1, 'x', null)),
    seq: fc.oneof(fc.nat(), fc.constantFrom(-1, 2.5, '9', null)),
    issuedAt: fc.oneof(
      fc.date().map((d) => (Number.isNaN(d.getTime()) ? 'x' : d.toISOString())),
      fc.constant(5),
    ),
    entries: fc.oneof(
      { weight: 5, arbitrary: fc.array(entry, { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.constantFrom('x', null, {}) },
    ),
    proxies: fc.oneof(
      fc.record({
        version: fc.oneof(fc.hexaString({ maxLength: 32 }), fc.integer()),
        list: fc.array(proxy, { maxLength: 3 }),
      }),
      fc.constantFrom(null, 'x', { version: 'v' }),
    ),
  },
  { requiredKeys: ['since', 'seq', 'issuedAt', 'entries'] },
);

/** Signs whatever revocationFeedBytes makes of the value, as a CA (or a CA bug) would. */
function signed(value: Record<string, unknown>): unknown {
  try {
    const bytes = revocationFeedBytes(value as never);
    return { ...value, signature: sign(null, bytes, keyPair().privateKey).toString('base64') };
  } catch {
    return value;
  }
}

export const revocationFeed: FuzzTarget<string> = {
  name: 'revocation-feed',
  covers: 'lib/protocol/api verifyRevocationFeed on the JSON text a CA answer carries (what lib/enrolled/feed reads)',
  arbitrary: () =>
    fc.oneof(
      { weight: 5, arbitrary: feedLike.map((f) => JSON.stringify(signed(f))) },
      { weight: 3, arbitrary: feedLike.map((f) => JSON.stringify(signed(f))).chain((t) => textMutants([t])) },
      { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
      { weight: 1, arbitrary: fc.constantFrom('null', '1', '"x"', '[]', '{"signature":{}}', '{"entries":null}') },
    ),
  run: (text) => {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return undefined; // the CA client refuses a non-JSON answer before this (E_INTERNAL)
    }
    return verifyRevocationFeed(json as RevocationFeed, keyPair().publicKey);
  },
  check: (_text, outcome) => {
    if (outcome.threw) return undefined;
    const v = outcome.value as { ok: boolean; value?: RevocationFeed } | undefined;
    if (!v?.ok || !v.value) return undefined;
    const f = v.value;
    const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
    if (!count(f.since) || !count(f.seq) || typeof f.issuedAt !== 'string')
      return 'accepted a feed with bad since/seq/issuedAt';
    if (!Array.isArray(f.entries)) return 'accepted a feed whose entries are not a list';
    for (const e of f.entries) {
      if (
        !count(e.seq) ||
        !REVOCATION_KINDS.includes(e.kind) ||
        typeof e.subject !== 'string' ||
        typeof e.at !== 'string'
      ) {
        return `accepted a malformed entry ${JSON.stringify(e)}`;
      }
      if (e.orgId !== null && typeof e.orgId !== 'string') return 'accepted an entry with a bad orgId';
    }
    if (f.proxies !== undefined) {
      if (typeof f.proxies?.version !== 'string' || !Array.isArray(f.proxies.list))
        return 'accepted a malformed proxy list';
      for (const p of f.proxies.list) {
        if (!['instance', 'org'].includes(p.scope) || !Array.isArray(p.hostnames) || typeof p.tlsAddress !== 'string') {
          return `accepted a malformed proxy ${JSON.stringify(p)}`;
        }
      }
    }
    return undefined;
  },
};

// ---- relay status lines ----------------------------------------------------------------------------------------

export const relayStatus: FuzzTarget<{ bytes: Buffer; from: 'proxy' | 'gateway' }> = {
  name: 'relay-status',
  covers: 'lib/protocol/relay decodeStatus, encodeStatus',
  arbitrary: () => {
    const code = fc.oneof(
      fc.constantFrom(...Object.keys(ErrorCodes)),
      fc.constantFrom(...HOSTILE_WORDS),
      fc.string({ maxLength: 12 }),
    );
    const line = fc.oneof(
      fc
        .record({ ok: fc.constant(false), code, message: fc.oneof(fc.string({ maxLength: 700 }), fc.integer()) })
        .map((o) => `${JSON.stringify(o)}\n`),
      fc.constantFrom('{"ok":true}\n', '{"ok":1}\n', 'null\n', '[]\n', '\n', '{"ok":true}'),
      fc.jsonValue({ maxDepth: 2 }).map((v) => `${JSON.stringify(v)}\n`),
      fc.string({ maxLength: 1200 }),
    );
    return fc.record({
      bytes: fc
        .tuple(line, fc.uint8Array({ maxLength: 32 }))
        .map(([l, rest]) => Buffer.concat([Buffer.from(l, 'utf8'), rest])),
      from: fc.constantFrom('proxy' as const, 'gateway' as const),
    });
  },
  run: (i) => decodeStatus(i.bytes, i.from),
  check: (i, outcome) => {
    if (outcome.threw) return undefined;
    const r = outcome.value as ReturnType<typeof decodeStatus>;
    if (r === null)
      return i.bytes.length < MAX_STATUS_LINE && !i.bytes.includes(0x0a)
        ? undefined
        : 'waited for more bytes with a full line';
    const s = r.status;
    if (!s.ok) {
      if (!Object.hasOwn(ErrorCodes, s.code))
        return `status with code ${JSON.stringify(s.code)} that is not an ErrorCode`;
      if (typeof s.message !== 'string') return 'status message is not a string';
      const again = decodeStatus(encodeStatus(s), i.from);
      if (!again || again.status.ok || again.status.code !== s.code) return 'refusal does not round-trip';
    }
    const nl = i.bytes.indexOf(0x0a);
    if (s.ok && nl >= MAX_STATUS_LINE) return `accepted a status line of ${nl + 1} bytes (limit ${MAX_STATUS_LINE})`;
    return undefined;
  },
  show: (i) => JSON.stringify({ from: i.from, hex: i.bytes.toString('hex'), text: i.bytes.toString('utf8') }),
};

// ---- addresses and CIDRs -------------------------------------------------------------------------------------

export const addresses: FuzzTarget<string> = {
  name: 'address',
  covers: 'lib/protocol/address readAddress, readCidr, cidrContains',
  arbitrary: () =>
    fc.oneof(
      fc.ipV4(),
      fc.ipV6(),
      fc.ipV4().map((a) => `::ffff:${a}`),
      fc.ipV4().map((a) => `::${a}`),
      fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.nat({ max: 140 })).map(([a, p]) => `${a}/${p}`),
      fc.constantFrom(
        'fe80::1%eth0',
        '::',
        '::1',
        '0.0.0.0/0',
        '::/0',
        '::ffff:0:0/96',
        '1.2.3.4/033',
        '::ffff:7f00:1',
      ),
      textMutants(['::ffff:10.0.0.1', '10.0.0.0/8', 'fe80::1%25eth0', '2001:db8::/32']),
      fc.string({ maxLength: 50 }),
    ),
  run: (text) => [readAddress(text), readCidr(text)],
  check: (text, outcome) => {
    if (outcome.threw) return undefined;
    const [address, cidr] = outcome.value as [ReturnType<typeof readAddress>, ReturnType<typeof readCidr>];
    if (typeof address === 'object') {
      if (address.bytes.length !== (address.family === 4 ? 4 : 16)) return 'address of the wrong length';
      const self = readCidr(address.text);
      if (typeof self !== 'object' || !cidrContains(self, address)) return 'an address is not in its own /32 or /128';
      if (address.family === 6 && address.bytes.slice(0, 12).every((b, i) => (i < 10 ? b === 0 : b === 0xff))) {
        return 'a mapped address was kept as IPv6';
      }
    }
    if (typeof cidr === 'object' && cidr.prefix > (cidr.family === 4 ? 32 : 128)) return 'prefix beyond the family';
    if (text.includes('%') && (typeof address === 'object' || typeof cidr === 'object'))
      return 'a zoned address was read';
    return undefined;
  },
};

export const PROTOCOL_TARGETS = [caApi, revocationFeed, relayStatus, addresses];
