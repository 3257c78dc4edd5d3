/** The access grant and gateway route X.509 extensions (lib/pki/grant.ts), decoded from hostile DER. */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import {
  type AccessGrant,
  checkGrant,
  decodeGrant,
  decodeRoute,
  encodeGrant,
  encodeRoute,
  GRANT_MODES,
  type GrantMode,
  validateGrant,
} from '../../../lib/pki/grant.js';
import { cloneNode, decodeLenient, mutateTree, toBuffer } from '../der-mutate.js';
import { hostileString, mutants, randomBytes } from '../mutate.js';
import type { FuzzTarget } from '../target.js';

const idChars = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-'.split(''));
export const validId = fc
  .array(idChars, { minLength: 1, maxLength: 20 })
  .map((cs) => cs.join(''))
  .filter((s) => s !== '.' && s !== '..');

const host = fc.oneof(
  fc.domain(),
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom('localhost', 'db.internal', '::ffff:10.0.0.1', '127.0.0.1'),
);

/** Grants that validateGrant accepts (modes unique, actor in the org). */
export const validGrant: fc.Arbitrary<AccessGrant> = fc
  .record({
    grantId: validId,
    orgId: validId,
    gatewayId: validId,
    identity: validId,
    target: fc.oneof(fc.record({ host, port: fc.integer({ min: 1, max: 65535 }) }), fc.record({ name: validId })),
    notAfter: fc.integer({ min: 1, max: 2 ** 40 }),
    modes: fc.option(fc.uniqueArray(fc.constantFrom(...GRANT_MODES), { minLength: 1, maxLength: 4 }), {
      nil: undefined,
    }),
  })
  .map((g) => {
    const grant: AccessGrant = {
      version: 1,
      grantId: g.grantId,
      orgId: g.orgId,
      gatewayId: g.gatewayId,
      actor: `spiffe://infisical.test/org/${g.orgId}/identity/${g.identity}`,
      target: g.target,
      notAfter: g.notAfter,
    };
    if (g.modes) grant.modes = g.modes as GrantMode[];
    return grant;
  })
  .filter((g) => validateGrant(g).ok);

const encoded = (g: AccessGrant): Buffer => {
  const e = encodeGrant(g);
  if (!e.ok) throw new Error(`valid grant did not encode: ${e.reason}`);
  return e.value;
};

interface GrantInput {
  bytes: Buffer;
  /** The grant the bytes were made from when they were not mutated: decoding must give it back. */
  original?: AccessGrant;
}

export const grantDecode: FuzzTarget<GrantInput> = {
  name: 'grant-decode',
  covers: 'lib/protocol/grant decodeGrant, checkGrant (and encodeGrant for the round trip)',
  arbitrary: () =>
    fc.oneof(
      { weight: 2, arbitrary: validGrant.map((g) => ({ bytes: encoded(g), original: g })) },
      {
        weight: 4,
        arbitrary: fc.tuple(validGrant, fc.array(fc.nat(), { minLength: 4, maxLength: 24 })).map(([g, tape]) => ({
          bytes: toBuffer(mutateTree(cloneNode(decodeLenient(encoded(g))), tape)),
        })),
      },
      {
        weight: 4,
        arbitrary: fc
          .array(validGrant.map(encoded), { minLength: 1, maxLength: 3 })
          .chain((seeds) => mutants(seeds.map((s) => new Uint8Array(s))).map((bytes) => ({ bytes }))),
      },
      { weight: 1, arbitrary: randomBytes(3000).map((bytes) => ({ bytes })) },
    ),
  run: (input) => {
    const g = decodeGrant(input.bytes);
    if (!g.ok) return g;
    // An accepted grant must also survive the gateway's decision without throwing.
    checkGrant(g.value, { orgId: g.value.orgId, gatewayId: 'gw', target: { name: 'x' }, mode: 'tcp', now: new Date() });
    return g;
  },
  check: (input, outcome) => {
    if (outcome.threw) return undefined;
    const v = outcome.value as { ok: boolean; value?: AccessGrant };
    if (input.original && !v.ok) return 'a valid grant was refused after encoding';
    if (!v.ok || !v.value) return undefined;
    if (!validateGrant(v.value).ok) return 'decoded grant fails validateGrant';
    if (input.original && !isDeepStrictEqual(v.value, input.original)) return 'grant does not round-trip';
    const again = encodeGrant(v.value);
    if (!again.ok || !again.value.equals(input.bytes)) return 'accepted bytes are not the canonical encoding';
    return undefined;
  },
  show: (i) => JSON.stringify({ hex: i.bytes.toString('hex'), original: i.original }),
};

const route = fc.record({ orgId: fc.oneof(validId, hostileString), gatewayId: fc.oneof(validId, hostileString) });

export const routeDecode: FuzzTarget<Buffer> = {
  name: 'route-decode',
  covers: 'lib/protocol/grant decodeRoute',
  arbitrary: () => {
    const seeds = route
      .map((r) => encodeRoute({ version: 1, ...r }))
      .filter((v) => v.ok)
      .map((v) => v.value);
    return fc.oneof(
      seeds,
      fc.array(seeds, { minLength: 1, maxLength: 2 }).chain((s) => mutants(s.map((b) => new Uint8Array(b)))),
      randomBytes(600),
    );
  },
  run: (bytes) => decodeRoute(bytes),
  check: (bytes, outcome) => {
    if (outcome.threw) return undefined;
    const v = outcome.value as { ok: boolean; value?: { version: 1; orgId: string; gatewayId: string } };
    if (!v.ok || !v.value) return undefined;
    const again = encodeRoute(v.value);
    return again.ok && again.value.equals(bytes) ? undefined : 'accepted route is not the canonical encoding';
  },
};

export const GRANT_TARGETS = [grantDecode, routeDecode];
