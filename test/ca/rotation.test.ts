/**
 * Phased CA rotation in the CA itself (lib/ca/rotation.ts), with an injected clock: which CA signs and which are
 * trusted in each phase, what `next` waits for (acknowledgements of live components, grants issued before init,
 * grant certificates of the CA being dropped), rollback, and the refusal of a component that missed a rotation.
 * The real-process version (daemons, traffic) is test/lifecycle/rotation.test.ts.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import type { SignedRequest } from '../../lib/ca/authority.js';
import { advance, type RotationScope, rotationStatus, rotationVersion, tickRotations } from '../../lib/ca/rotation.js';
import { GatewayError, unwrap } from '../../lib/errors/codes.js';
import type { GatewayEnrollResponse } from '../../lib/protocol/api.js';
import { type ClientKeys, clientKeys, csrFor, type Fixture, newAuthority, newOrg } from './helpers.js';
import { renewal } from './peers.js';

const ACME: RotationScope = { orgId: 'acme' };
/** The issuer of a chain's leaf, as "O=acme\nCN=org gateway client CA g2". */
const issuerCn = (chain: string): string => new X509Certificate(chain).issuer;

/** A renewal request signed with `chain`'s key, asking for `next`'s keys (peers.ts). */
const renewalRequest = (f: Fixture, chain: string, keys: ClientKeys, next: ClientKeys): SignedRequest =>
  renewal(f, { chain, keys }, next);

async function world() {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      subject: 'group:dba',
      gateways: ['gw1'],
      targets: ['db.internal:5432'],
      modes: ['tcp'],
    }),
  );
  let keys = clientKeys();
  let bundle = unwrap(
    f.ca.enrollGateway(acme.orgAdmin, {
      orgId: 'acme',
      gatewayId: 'gw1',
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
    }),
  );
  const gateway = {
    get bundle(): GatewayEnrollResponse {
      return bundle;
    },
    /** What the daemon does when the feed's rotation version moves: renew, then acknowledge on its next read. */
    acknowledge(): void {
      const next = clientKeys();
      bundle = unwrap(f.ca.renewGateway(renewalRequest(f, bundle.tlsCertificateChain, keys, next)));
      keys = next;
      seen(rotationVersion(f.ca.ctx, { kind: 'gateway', orgId: 'acme' }));
    },
    /** A feed read without acknowledging anything new (still live). */
    read(ack?: string): void {
      seen(ack);
    },
    request: (): SignedRequest => renewalRequest(f, bundle.tlsCertificateChain, keys, clientKeys()),
  };
  function seen(ack?: string): void {
    f.ca.ctx.store.seen.record({ kind: 'gateway', orgId: 'acme', id: 'gw1' }, f.clock.ms, '0.1.0', ack);
  }
  const grant = () =>
    unwrap(
      f.ca.issueGrant(acme.member, {
        orgId: 'acme',
        gatewayId: 'gw1',
        target: { host: 'db.internal', port: 5432 },
        mode: 'tcp',
        outerCsr: csrFor().csr,
        innerCsr: csrFor().csr,
      }),
    );
  gateway.acknowledge();
  return { f, gateway, grant };
}

function pending(f: Fixture, name: string): GatewayError {
  try {
    advance(f.ca.ctx, ACME, name, 'next');
  } catch (err) {
    assert.ok(err instanceof GatewayError);
    return err;
  }
  assert.fail('next should have been refused');
}

test('gateway-client through all four phases: grants signed by the new CA from update_clients, both trusted until standby', async () => {
  const { f, gateway, grant } = await world();
  const k = f.ca.ctx.keyring;
  const oldCa = k.x509Pem('acme', 'gateway-client');

  const started = advance(f.ca.ctx, ACME, 'gateway-client', 'start');
  assert.equal(started.to, 'init');
  assert.deepEqual(started.status.pending, ['gateway:acme/gw1'], 'the live gateway has not acknowledged init');
  assert.match(pending(f, 'gateway-client').message, /gateway:acme\/gw1/);
  assert.equal(pending(f, 'gateway-client').code, 'E_ROTATION_PENDING');
  assert.equal(k.x509Pems('acme', 'gateway-client').length, 2, 'init: both CAs trusted');
  assert.equal(k.x509Pem('acme', 'gateway-client'), oldCa, 'init: the old CA still signs');
  assert.equal(issuerCn(grant().innerCertificateChain), new X509Certificate(oldCa).subject);

  gateway.acknowledge();
  assert.deepEqual(gateway.bundle.trust.gatewayClientCaCerts.length, 2, 'the renewal brought both CAs');
  assert.equal(advance(f.ca.ctx, ACME, 'gateway-client', 'next').to, 'update_clients');
  assert.match(issuerCn(grant().innerCertificateChain), / g2$/, 'update_clients: grants from the new CA');

  gateway.acknowledge();
  assert.equal(advance(f.ca.ctx, ACME, 'gateway-client', 'next').to, 'update_servers');
  gateway.acknowledge();
  // Grants of the old CA issued in init are still valid: standby waits for them (grant_ttl 5 min).
  const waiting = pending(f, 'gateway-client');
  assert.match(waiting.message, /grant certificate\(s\) signed by org:acme:gateway-client still valid/);
  f.clock.advance(5 * 60 + 1);
  gateway.read(rotationVersion(f.ca.ctx, { kind: 'gateway', orgId: 'acme' }));
  const done = advance(f.ca.ctx, ACME, 'gateway-client', 'next');
  assert.equal(done.to, 'standby');
  assert.deepEqual(done.status.pending, ['gateway:acme/gw1'], 'standby too is acknowledged: the old CA still held');
  gateway.acknowledge();
  assert.deepEqual(rotationStatus(f.ca.ctx, ACME, 'gateway-client')[0]?.pending, [], 'the old CA is trusted nowhere');
  assert.deepEqual(k.x509Pems('acme', 'gateway-client'), [k.x509Pem('acme', 'gateway-client')], 'one CA again');
  assert.notEqual(k.x509Pem('acme', 'gateway-client'), oldCa);
  assert.equal(f.ca.ctx.store.issuance.authority('org:acme:gateway-client')?.sealedKey, null, 'old key destroyed');
  const audit = f.ca.ctx.store.audit
    .since(0, 1000)
    .filter((a) => a.action.startsWith('rotation.'))
    .map((a) => a.reason);
  assert.deepEqual(audit, [
    'standby → init',
    'init → update_clients',
    'update_clients → update_servers',
    'update_servers → standby (trusted: org:acme:gateway-client@2)',
  ]);
});

test('gateway-server: update_servers waits for grants issued before init; a gateway away during the rotation is refused E_ROTATION_MISSED', async () => {
  const { f, gateway, grant } = await world();
  const before = grant();
  assert.equal(before.trust.gatewayServerCaCerts.length, 1);
  const away = gateway.request(); // the gateway as it stood before the rotation (its TLS cert from the old CA)
  advance(f.ca.ctx, ACME, 'gateway-server', 'start');
  assert.equal(grant().trust.gatewayServerCaCerts.length, 2, 'grants issued from init on trust both servers');
  gateway.acknowledge();
  advance(f.ca.ctx, ACME, 'gateway-server', 'next');
  gateway.acknowledge();
  assert.match(pending(f, 'gateway-server').message, /grant\(s\) issued before init/);
  f.clock.advance(5 * 60 + 1);
  gateway.read(rotationVersion(f.ca.ctx, { kind: 'gateway', orgId: 'acme' }));
  advance(f.ca.ctx, ACME, 'gateway-server', 'next');
  gateway.acknowledge();
  assert.match(
    issuerCn(gateway.bundle.tlsCertificateChain),
    / g2$/,
    'update_servers: the gateway renewed from the new CA',
  );
  gateway.read(rotationVersion(f.ca.ctx, { kind: 'gateway', orgId: 'acme' }));
  assert.equal(advance(f.ca.ctx, ACME, 'gateway-server', 'next').to, 'standby');

  const refused = f.ca.renewGateway(away);
  assert.equal(refused.ok, false);
  assert.equal(!refused.ok && refused.code, 'E_ROTATION_MISSED', !refused.ok ? refused.reason : '');
  assert.ok(f.ca.renewGateway(gateway.request()).ok, 'the gateway that followed renews as usual');
});

test('rollback from update_clients: the old CA signs again, both trusted until next, then the old CA alone', async () => {
  const { f, gateway, grant } = await world();
  const k = f.ca.ctx.keyring;
  const oldCa = k.x509Pem('acme', 'gateway-client');
  advance(f.ca.ctx, ACME, 'gateway-client', 'start');
  gateway.acknowledge();
  advance(f.ca.ctx, ACME, 'gateway-client', 'next');
  assert.match(issuerCn(grant().innerCertificateChain), / g2$/);
  gateway.acknowledge();
  assert.equal(advance(f.ca.ctx, ACME, 'gateway-client', 'rollback').to, 'rollback');
  assert.equal(k.x509Pem('acme', 'gateway-client'), oldCa, 'rollback: the old CA signs');
  assert.equal(k.x509Pems('acme', 'gateway-client').length, 2, 'rollback: both still trusted');
  gateway.acknowledge();
  assert.match(pending(f, 'gateway-client').message, /signed by org:acme:gateway-client@2 still valid/);
  f.clock.advance(5 * 60 + 1);
  gateway.read(rotationVersion(f.ca.ctx, { kind: 'gateway', orgId: 'acme' }));
  assert.equal(advance(f.ca.ctx, ACME, 'gateway-client', 'next').to, 'standby');
  assert.deepEqual(k.x509Pems('acme', 'gateway-client'), [oldCa]);
  assert.equal(f.ca.ctx.store.issuance.authority('org:acme:gateway-client@2')?.sealedKey, null, 'new key destroyed');
  // A second rotation after a rollback starts a third CA.
  assert.equal(advance(f.ca.ctx, ACME, 'gateway-client', 'start').status.trusted[1], 'org:acme:gateway-client@3');
});

test('offline components are listed, not waited for; bad names and phases are refused with stable codes', async () => {
  const { f } = await world();
  advance(f.ca.ctx, ACME, 'proxy-ssh-client', 'start');
  f.clock.advance(31);
  const [s] = rotationStatus(f.ca.ctx, ACME, 'proxy-ssh-client');
  assert.deepEqual(s?.offline, ['gateway:acme/gw1']);
  assert.deepEqual(s?.pending, []);
  assert.equal(advance(f.ca.ctx, ACME, 'proxy-ssh-client', 'next').to, 'update_clients');
  assert.throws(() => advance(f.ca.ctx, ACME, 'proxy-ssh-client', 'start'), { code: 'E_CONFLICT' });
  assert.throws(() => advance(f.ca.ctx, ACME, 'nope', 'start'), { code: 'E_REQUEST_INVALID' });
  assert.throws(() => advance(f.ca.ctx, { instance: true }, 'gateway-client', 'start'), { code: 'E_REQUEST_INVALID' });
  assert.throws(() => advance(f.ca.ctx, ACME, 'gateway-server', 'rollback'), { code: 'E_CONFLICT' });
  assert.throws(() => advance(f.ca.ctx, { orgId: 'ghost' }, 'gateway-server', 'start'), { code: 'E_NOT_FOUND' });
  assert.equal(rotationStatus(f.ca.ctx, { instance: true }).length, 5, 'four proxy CAs and the API root');
  assert.equal(rotationStatus(f.ca.ctx, ACME).length, 6);
});

test('automatic mode (--grace): each phase lasts the grace, moves on only when acknowledged, the old key goes a grace after standby', async () => {
  const { f, gateway } = await world();
  const version = () => rotationVersion(f.ca.ctx, { kind: 'gateway', orgId: 'acme' });
  advance(f.ca.ctx, ACME, 'proxy-ssh-server', 'start', { actor: 'local-admin', graceMs: 60_000 });
  f.clock.advance(30);
  gateway.acknowledge();
  assert.deepEqual(tickRotations(f.ca.ctx), [], 'not before the grace');
  f.clock.advance(31);
  const phaseOf = () => rotationStatus(f.ca.ctx, ACME, 'proxy-ssh-server')[0]?.phase;
  assert.equal(tickRotations(f.ca.ctx)[0]?.to, 'update_clients');
  f.clock.advance(61);
  gateway.read(); // live, but it has not acknowledged update_clients
  assert.deepEqual(tickRotations(f.ca.ctx), [], 'waits for the acknowledgement');
  assert.equal(phaseOf(), 'update_clients');
  gateway.acknowledge();
  assert.equal(tickRotations(f.ca.ctx)[0]?.to, 'update_servers');
  f.clock.advance(61);
  gateway.acknowledge();
  gateway.read(version());
  assert.equal(tickRotations(f.ca.ctx)[0]?.to, 'standby');
  const old = () => f.ca.ctx.store.issuance.authority('org:acme:proxy-ssh-server')?.sealedKey ?? null;
  assert.notEqual(old(), null, 'the old key stays for the grace');
  f.clock.advance(61);
  tickRotations(f.ca.ctx);
  assert.equal(old(), null, 'and is destroyed after it');
  const actors = f.ca.ctx.store.audit
    .since(0, 1000)
    .filter((a) => a.action === 'rotation.next')
    .map((a) => a.actor);
  assert.deepEqual(actors, ['automatic-rotation', 'automatic-rotation', 'automatic-rotation']);
});
