/**
 * Gateway replicas (enrolled with --replica NAME): each with its own keys, token and certificate generations.
 * Every replica's certificates name the one gateway (URI SAN, SSH principal and key id) and carry the replica
 * name beside it; renewal and the stolen-copy defence are per replica; enrolling without a replica replaces the
 * whole gateway, its replicas too.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { advance, rotationStatus, rotationVersion } from '../../lib/ca/rotation.js';
import { MIGRATIONS } from '../../lib/ca/store-schema.js';
import { unwrap } from '../../lib/errors/codes.js';
import { decodeReplica, REPLICA_EXTENSION_OID, REPLICA_SSH_EXTENSION } from '../../lib/pki/grant.js';
import { parseCertificate } from '../../lib/pki/x509.js';
import { BODIES, type GatewayEnrollResponse } from '../../lib/protocol/api.js';
import { parseCertificate as parseSsh } from '../../lib/sshcert/index.js';
import { type ClientKeys, clientKeys, type Fixture, newAuthority, newOrg } from './helpers.js';
import {
  feedRead,
  leafDer,
  type Held as PeerHeld,
  refused,
  renewal,
  revokedCerts,
  sshSerial,
  tlsSerial,
} from './peers.js';

interface Held extends PeerHeld {
  serials: string[];
}
const held = (r: GatewayEnrollResponse, keys: ClientKeys): Held => ({
  chain: r.tlsCertificateChain,
  keys,
  serials: [tlsSerial(r.tlsCertificateChain), ...r.sshCertificates.map((c) => sshSerial(c.certificate))],
});

/** Enrolls replica `replica` of acme/gw1 with a one-time token of its own (null: the gateway itself). */
function enrollWithToken(
  f: Fixture,
  orgAdmin: Parameters<Fixture['ca']['createEnrollmentToken']>[0],
  replica: string | null,
): Held {
  const token = unwrap(f.ca.createEnrollmentToken(orgAdmin, 'acme', { kind: 'gateway', subjectId: 'gw1' })).token;
  const keys = clientKeys();
  const r = unwrap(
    f.ca.enrollGateway(null, {
      orgId: 'acme',
      gatewayId: 'gw1',
      ...(replica === null ? {} : { replica }),
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
      enrollmentToken: token,
    }),
  );
  return held(r, keys);
}

async function twoReplicas() {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  const a = enrollWithToken(f, acme.orgAdmin, 'a');
  const b = enrollWithToken(f, acme.orgAdmin, 'b');
  return { f, acme, a, b };
}

test('replicas enroll on their own: certificates of the one gateway, each carrying its replica name', async () => {
  const { f, a, b } = await twoReplicas();
  assert.notEqual(a.serials[0], b.serials[0]);
  for (const [who, name] of [
    [a, 'a'],
    [b, 'b'],
  ] as const) {
    const leaf = parseCertificate(leafDer(who.chain));
    assert.deepEqual(leaf.san.uris, ['spiffe://example.test/org/acme/gateway/gw1'], 'the gateway URI, exactly');
    const ext = leaf.extensions.get(REPLICA_EXTENSION_OID);
    assert.ok(ext && !ext.critical, 'a non-critical GatewayReplica extension');
    assert.equal(unwrap(decodeReplica(ext.value)), name);
    const peer = unwrap(feedRead(f, who));
    assert.equal(peer.id, 'gw1');
    assert.equal(peer.replica, name);
    assert.equal(peer.standing, 'current');
    f.ca.noteSeen(peer, 'infisical-gateway/1.2.3');
  }
  const token = unwrap(f.ca.createEnrollmentToken(f.admin, 'acme', { kind: 'gateway', subjectId: 'gw1' })).token;
  const keys = clientKeys();
  const r = unwrap(
    f.ca.enrollGateway(null, {
      orgId: 'acme',
      gatewayId: 'gw1',
      replica: 'c',
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
      enrollmentToken: token,
    }),
  );
  for (const c of r.sshCertificates) {
    const cert = unwrap(parseSsh(c.certificate));
    assert.deepEqual(cert.principals, ['gw1']);
    assert.equal(cert.keyId, 'spiffe://example.test/org/acme/gateway/gw1');
    assert.equal(Buffer.from(cert.extensions[REPLICA_SSH_EXTENSION] ?? []).toString(), 'c');
    assert.ok('permit-port-forwarding' in cert.extensions);
  }
  const listed = unwrap(f.ca.listGateways(f.admin, 'acme')).gateways;
  assert.equal(listed.length, 1, 'one gateway');
  assert.deepEqual(
    listed[0]!.replicas?.map((x) => [x.replica, x.currentSerial]),
    [
      ['a', a.serials[0]],
      ['b', b.serials[0]],
      ['c', tlsSerial(r.tlsCertificateChain)],
    ],
  );
  assert.equal(listed[0]!.currentSerial, null, 'no enrollment of the gateway itself');
  assert.deepEqual(
    listed[0]!.replicas?.map((x) => [x.replica, x.lastSeenAt !== null, x.version]),
    [
      ['a', true, '1.2.3'],
      ['b', true, '1.2.3'],
      ['c', false, null],
    ],
    'each replica seen on its own',
  );
  assert.equal(listed[0]!.version, '1.2.3', 'and the gateway seen through them');
  const audit = unwrap(f.ca.audit(f.admin, 0)).entries.filter((e) => e.action === 'gateway.enroll');
  assert.deepEqual(
    audit.map((e) => e.reason),
    ['replica a', 'replica b', 'replica c'],
  );
  // A bad replica name never reaches the authority.
  refused(
    BODIES.gatewayEnroll.parse({
      orgId: 'acme',
      gatewayId: 'gw1',
      replica: '../x',
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
    }),
    'E_REQUEST_INVALID',
    'a replica name outside the id rule',
  );
});

test("one replica's renewal retires its own predecessor only: the other keeps working and renews", async () => {
  const { f, a, b } = await twoReplicas();
  const nextA = clientKeys();
  const a2 = held(unwrap(f.ca.renewGateway(renewal(f, a, nextA))), nextA);
  assert.equal(unwrap(feedRead(f, a2)).standing, 'current');
  assert.deepEqual(revokedCerts(f), [...a.serials].sort(), "a's predecessor only");
  assert.equal(unwrap(feedRead(f, b)).standing, 'current', 'b untouched');
  refused(f.ca.renewGateway(renewal(f, a, clientKeys())), 'E_CERT_SUPERSEDED', "a copy of a's old state");
  const nextB = clientKeys();
  const b2 = held(unwrap(f.ca.renewGateway(renewal(f, b, nextB))), nextB);
  assert.equal(unwrap(feedRead(f, b2)).replica, 'b');
  assert.equal(unwrap(feedRead(f, a2)).standing, 'current', "b's renewal leaves a current");
  assert.deepEqual(revokedCerts(f), [...a.serials, ...b.serials].sort());
  // The grace path is per replica too.
  const a3keys = clientKeys();
  unwrap(f.ca.renewGateway(renewal(f, a2, a3keys)));
  f.clock.advance(121);
  assert.equal(f.ca.retireDue(), 1, "a's predecessor, once the grace passed");
  assert.ok(revokedCerts(f).includes(a2.serials[0]!));
  assert.ok(!revokedCerts(f).includes(b2.serials[0]!));
});

test('enrolling the gateway without a replica retires every replica; enrolling a replica again replaces only it', async () => {
  const { f, acme, a, b } = await twoReplicas();
  const a2 = enrollWithToken(f, acme.orgAdmin, 'a');
  assert.deepEqual(revokedCerts(f), [...a.serials].sort(), 'a replaced, b not');
  refused(feedRead(f, a), 'E_CERT_SUPERSEDED', "a's old enrollment");
  assert.equal(unwrap(feedRead(f, b)).standing, 'current');
  const whole = enrollWithToken(f, acme.orgAdmin, null);
  assert.deepEqual(revokedCerts(f), [...a.serials, ...a2.serials, ...b.serials].sort(), 'both replicas retired');
  refused(feedRead(f, b), 'E_CERT_SUPERSEDED', 'b after the gateway was replaced');
  refused(f.ca.renewGateway(renewal(f, a2, clientKeys())), 'E_CERT_SUPERSEDED', 'a after the gateway was replaced');
  const peer = unwrap(feedRead(f, whole));
  assert.equal(peer.replica, null);
  assert.deepEqual(unwrap(f.ca.listGateways(f.admin, 'acme')).gateways[0]!.replicas, []);
  const retirements = unwrap(f.ca.audit(f.admin, 0)).entries.filter((e) => e.action === 'certificate.retire');
  assert.deepEqual(
    retirements.map((e) => e.subject),
    ['gateway:gw1/a', 'gateway:gw1/a', 'gateway:gw1/b'],
  );
});

test('the replicas migration is plain SQL (no SQLite-only syntax)', () => {
  const m = MIGRATIONS.find((x) => x.name === 'gateway replicas');
  assert.ok(m);
  assert.doesNotMatch(m.sql, /STRICT|AUTOINCREMENT|WITHOUT ROWID|INSERT OR|BLOB/);
});

test('a rotation waits for every replica to acknowledge, each for itself', async () => {
  const { f, a, b } = await twoReplicas();
  const read = (who: Held, ack?: string) => f.ca.noteSeen(unwrap(feedRead(f, who)), 'infisical-gateway/1.2.3', ack);
  read(a);
  read(b);
  const started = advance(f.ca.ctx, { orgId: 'acme' }, 'gateway-client', 'start');
  assert.deepEqual(
    started.status.pending,
    ['gateway:acme/gw1/a', 'gateway:acme/gw1/b'],
    'no row for the gateway itself',
  );
  f.clock.advance(11); // past the seen store's write interval
  read(a, rotationVersion(f.ca.ctx, { kind: 'gateway', orgId: 'acme' }));
  const [status] = rotationStatus(f.ca.ctx, { orgId: 'acme' }, 'gateway-client');
  assert.deepEqual(status?.pending, ['gateway:acme/gw1/b'], "a's acknowledgement is not b's");
});
