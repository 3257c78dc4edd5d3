/** The gateway's state database: private file modes, enrollment round trip, revocations and audit persisted. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { certWindows } from '../../lib/gateway/gateway.js';
import { GatewayStore } from '../../lib/gateway/state.js';
import { World } from '../helpers/world.js';
import { gatewayState } from './deploy.js';

const dir = mkdtempSync(join(tmpdir(), 'gw-state-'));
after(() => rmSync(dir, { recursive: true, force: true }));

it('stores the enrollment in a 0600 database in a 0700 directory and reads it back whole', () => {
  const world = new World();
  const state = gatewayState(world, [{ proxyId: 'p1', sshPort: 2222, tlsPort: 8443 } as never]);
  const path = join(dir, 'state', 'gateway.db');
  const store = GatewayStore.open(path);
  assert.equal(store.isEnrolled(), false);
  assert.throws(() => store.load(), /not enrolled: run `infisical-gateway enroll`/);
  store.saveEnrollment(state);
  assert.deepEqual(store.load(), state);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'state')).mode & 0o777, 0o700);
  // renewal replaces everything at once
  const renewed = {
    ...state,
    tlsChainPem: world.gatewayInnerTls({ orgId: state.orgId, gatewayId: state.gatewayId }).certPem,
  };
  store.saveEnrollment(renewed);
  assert.equal(store.load().tlsChainPem, renewed.tlsChainPem);
  assert.equal(store.load().proxies.length, 1);

  assert.equal(store.addRevocation({ kind: 'grant', subject: 'g1', orgId: 'org-a', seq: 3 }), true);
  assert.equal(store.addRevocation({ kind: 'grant', subject: 'g1', orgId: 'org-a', seq: 3 }), false);
  store.setFeedSeq(3);
  store.appendAudit({ event: 'gateway.stream', time: new Date().toISOString(), fields: { bytesIn: 5 } });
  store.close();

  const again = GatewayStore.open(path);
  assert.deepEqual(again.revocations(), [{ kind: 'grant', subject: 'g1', orgId: 'org-a' }]);
  assert.equal(again.feedSeq(), 3);
  assert.deepEqual(again.audit()[0]?.fields, { bytesIn: 5 });
  // every cert the gateway holds has a renewal window: the TLS leaf and each SSH cert
  assert.equal(certWindows(again.load()).length, 2);
  again.close();
});
