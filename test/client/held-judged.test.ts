/**
 * An inner session held ahead of need (dial.ts holdInner) is judged again when a stream takes it: the client holds
 * the gateway's certificate to the clock of that moment (inner-session.ts `rejudge`, THE verifier's verifyAgain on
 * the certificate verified at the handshake), over real sockets (lib/proxy and lib/gateway in this process, an SSH
 * tunnel between them). A gateway certificate that ended while the session waited is refused before GO: the
 * target is never dialled, and the refusal is the gateway's answer (not a relay gone, not dialled again).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { completeStream, dialViaProxy, holdInner, openRelay } from '../../lib/client/dial.js';
import { ConnectError } from '../../lib/client/errors.js';
import type { ClientGrant } from '../../lib/client/grant.js';
import { gatewayAnswered } from '../../lib/client/inner-session.js';
import { type EchoPair, startEchoPair } from '../gateway/deploy.js';
import { World } from '../helpers/world.js';

const world = new World();
let pair: EchoPair;
const opts = { stepTimeoutMs: 5000, allowHalfOpen: true };
/** Past every certificate's end in this world (the longest lives 30 days). */
const LATER_MS = 60 * 86400_000;

before(async () => {
  pair = await startEchoPair(world);
});
after(() => pair?.close());

/** A tcp grant whose gateway has negotiated tcp+go once (so the next relay's inner session can be held). */
async function learntGrant(): Promise<ClientGrant> {
  const grant = await pair.grant();
  (await dialViaProxy(grant, grant.proxies[0]!, 'tcp', opts)).socket.destroy();
  return grant;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('a held inner session is judged again when used', () => {
  it('by the clock of then: the gateway certificate ended meanwhile, refused before GO, no target dial', async () => {
    const grant = await learntGrant();
    // The connector's clock, shared by the hold and the stream: moved past the gateway certificate's end between.
    let offset = 0;
    const clocked = { ...opts, now: () => new Date(Date.now() + offset) };
    const relay = await holdInner(await openRelay(grant, grant.proxies[0]!, clocked), 'tcp', clocked);
    assert.ok(relay.held, 'held');
    const connections = pair.echo.connections();
    offset = LATER_MS;
    const err = await completeStream(relay, 'tcp', clocked).then(
      () => assert.fail('a stream opened on a gateway certificate past its end'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, 'E_CERT_EXPIRED', err.describe());
    assert.equal(err.hop, 'gateway');
    assert.equal(gatewayAnswered(err), true, 'the answer about this gateway: not dialled again as a relay gone');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(pair.echo.connections(), connections, 'no GO went: the target saw no connection');
  });

  it('by the clock of now: the same held session carries the stream, every byte back', async () => {
    const grant = await learntGrant();
    const relay = await holdInner(await openRelay(grant, grant.proxies[0]!, opts), 'tcp', opts);
    assert.ok(relay.held, 'held');
    const stream = await completeStream(relay, 'tcp', opts);
    assert.equal(stream.held, true);
    const sent = randomBytes(256 * 1024);
    const chunks: Buffer[] = [];
    let got = 0;
    const back = new Promise<Buffer>((resolve) =>
      stream.socket.on('data', (d: Buffer) => {
        chunks.push(d);
        got += d.length;
        if (got >= sent.length) resolve(Buffer.concat(chunks));
      }),
    );
    stream.socket.write(sent);
    assert.equal(sha(await back), sha(sent), 'byte-exact');
    stream.socket.destroy();
  });
});
