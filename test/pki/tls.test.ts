/** mTLS with our certificates: Node ↔ Node both ways, and OpenSSL s_client / s_server as real peers. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import tls from 'node:tls';
import { type ErrorCode, GatewayError, unwrap } from '../../lib/errors/codes.js';
import { createCsr, parseCsr } from '../../lib/pki/csr.js';
import { type AccessGrant, checkGrant } from '../../lib/pki/grant.js';
import { gatewayUri, identityUri } from '../../lib/pki/identity.js';
import { generateKeyPairSync } from '../../lib/pki/keys.js';
import { issueGatewayServerCert, issuePlatformInnerClientCert } from '../../lib/pki/profiles.js';
import { connectVerified, mtlsClientOptions, mtlsServerOptions, onVerifiedConnection } from '../../lib/pki/tls.js';
import type { VerifiedPeer } from '../../lib/pki/verify.js';
import { hierarchy, OpensslDir } from './fixtures.js';

const ossl = new OpensslDir();
after(() => ossl.cleanup());
const clock = () => new Date();
const now = clock();
const GW = gatewayUri('td.example', 'acme', 'gw-1');
const ACTOR = identityUri('td.example', 'acme', 'alice');

// SPEC §2: the org gateway server CA signs the gateway; the org gateway client CA signs the platform.
const serverCa = hierarchy('ecdsa-p256', 'Acme GW Server', now);
const clientCa = hierarchy('rsa-2048', 'Acme GW Client', now);
const otherOrgClientCa = hierarchy('ecdsa-p256', 'Acme GW Client', now);

const gwKey = generateKeyPairSync();
const gwCsr = unwrap(parseCsr(createCsr({ privateKey: gwKey.privateKey, commonName: 'gw-1' })));
const gwCert = unwrap(issueGatewayServerCert(serverCa.issuer, { subjectKey: gwCsr.publicKey, uri: GW, now }));
const grant: AccessGrant = {
  version: 1,
  grantId: 'grant-tls',
  orgId: 'acme',
  gatewayId: 'gw-1',
  actor: ACTOR,
  target: { host: 'db.internal', port: 5432 },
  modes: ['tcp'],
  notAfter: Math.floor(now.getTime() / 1000) + 300,
};
const clientKey = generateKeyPairSync('rsa-2048');
const clientCert = unwrap(
  issuePlatformInnerClientCert(clientCa.issuer, { subjectKey: clientKey.publicKey, uri: ACTOR, grant, now }),
);
const strangerKey = generateKeyPairSync();
const strangerCert = unwrap(
  issuePlatformInnerClientCert(otherOrgClientCa.issuer, { subjectKey: strangerKey.publicKey, uri: ACTOR, grant, now }),
);

const grantContext = {
  orgId: 'acme',
  gatewayId: 'gw-1',
  target: { host: 'db.internal', port: 5432 },
  mode: 'tcp' as const,
};

/** A gateway-like echo server: greets verified peers with their identity; records refusals. */
async function gatewayServer() {
  const refusals: ErrorCode[] = [];
  const accepted: VerifiedPeer[] = [];
  const server = tls.createServer(
    mtlsServerOptions({
      key: gwKey.privateKey,
      chain: [gwCert.pem, serverCa.inter.pem],
      anchors: clientCa.root.pem,
      alpn: ['tcp', 'http'],
    }),
  );
  onVerifiedConnection(
    server,
    { anchors: clientCa.root.pem, purpose: 'clientAuth', requireGrant: true },
    clock,
    (socket, peer) => {
      // What the grant allows is checked by its holder, as the gateway's admission does.
      const allowed = checkGrant(peer.grant!, { ...grantContext, mode: socket.alpnProtocol as 'tcp', now: clock() });
      if (!allowed.ok) {
        refusals.push(allowed.code);
        socket.destroy();
        return;
      }
      accepted.push(peer);
      socket.end(`hello ${peer.uris[0]} grant=${peer.grant?.grantId}\n`);
    },
    (_socket, code) => refusals.push(code),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, refusals, accepted };
}

async function readAll(socket: tls.TLSSocket): Promise<string> {
  let out = '';
  socket.on('data', (d) => {
    out += d.toString();
  });
  await Promise.race([once(socket, 'close'), once(socket, 'end')]);
  return out;
}

test('Node ↔ Node mTLS: both sides verify with checkPeer; the gateway sees the grant', async () => {
  const { server, port, accepted } = await gatewayServer();
  try {
    const { socket, peer } = await connectVerified(
      mtlsClientOptions({
        key: clientKey.privateKey,
        chain: [clientCert.pem, clientCa.inter.pem],
        anchors: serverCa.root.pem,
        alpn: ['tcp'],
        host: '127.0.0.1',
        port,
      }),
      { anchors: serverCa.root.pem, purpose: 'serverAuth', expectedUri: GW },
      clock,
    );
    assert.equal(socket.getProtocol(), 'TLSv1.3');
    assert.equal(socket.alpnProtocol, 'tcp');
    assert.deepEqual(peer.uris, [GW]);
    assert.equal(await readAll(socket), `hello ${ACTOR} grant=grant-tls\n`);
    assert.equal(accepted[0]?.grant?.grantId, 'grant-tls');
  } finally {
    server.close();
  }
});

test('the gateway destroys peers the verifier refuses: other org CA, no cert, mode not granted', async () => {
  const { server, port, refusals, accepted } = await gatewayServer();
  try {
    const attempt = async (opts: tls.ConnectionOptions) => {
      const socket = tls.connect(opts);
      socket.on('error', () => {});
      await once(socket, 'secureConnect');
      return readAll(socket);
    };
    const base = { anchors: serverCa.root.pem, host: '127.0.0.1', port };
    const stranger = await attempt(
      mtlsClientOptions({
        ...base,
        key: strangerKey.privateKey,
        chain: [strangerCert.pem, otherOrgClientCa.inter.pem],
        alpn: ['tcp'],
      }),
    );
    const anonymous = await attempt({
      ...mtlsClientOptions({ ...base, key: gwKey.privateKey, chain: gwCert.pem }),
      key: undefined,
      cert: undefined,
    });
    const wrongMode = await attempt(
      mtlsClientOptions({
        ...base,
        key: clientKey.privateKey,
        chain: [clientCert.pem, clientCa.inter.pem],
        alpn: ['http'],
      }),
    );
    assert.deepEqual([stranger, anonymous, wrongMode], ['', '', '']);
    assert.deepEqual(refusals, ['E_CERT_UNTRUSTED', 'E_CERT_UNTRUSTED', 'E_GRANT_TARGET']);
    assert.equal(accepted.length, 0);
  } finally {
    server.close();
  }
});

test('the client refuses a server with the wrong identity or from the wrong CA', async () => {
  const { server, port } = await gatewayServer();
  try {
    const opts = mtlsClientOptions({
      key: clientKey.privateKey,
      chain: [clientCert.pem, clientCa.inter.pem],
      anchors: serverCa.root.pem,
      host: '127.0.0.1',
      port,
    });
    const codeOf = async (exp: Parameters<typeof connectVerified>[1]) => {
      try {
        await connectVerified(opts, exp, clock);
        return 'accepted';
      } catch (err) {
        return err instanceof GatewayError ? err.code : String(err);
      }
    };
    assert.equal(
      await codeOf({
        anchors: serverCa.root.pem,
        purpose: 'serverAuth',
        expectedUri: gatewayUri('td.example', 'acme', 'gw-2'),
      }),
      'E_CERT_IDENTITY',
    );
    assert.equal(
      await codeOf({ anchors: clientCa.root.pem, purpose: 'serverAuth', expectedUri: GW }),
      'E_CERT_UNTRUSTED',
    );
  } finally {
    server.close();
  }
});

test('openssl s_client completes mTLS with our certs against our server (and verifies our chain)', async () => {
  const { server, port, accepted, refusals } = await gatewayServer();
  try {
    ossl.write('client.pem', clientCert.pem);
    ossl.write('client-inter.pem', clientCa.inter.pem);
    ossl.writeKey('client.key', clientKey.privateKey);
    ossl.write('server-root.pem', serverCa.root.pem);
    const child = spawn(
      'openssl',
      [
        's_client',
        '-connect',
        `127.0.0.1:${port}`,
        '-tls1_3',
        '-alpn',
        'tcp',
        '-cert',
        'client.pem',
        '-cert_chain',
        'client-inter.pem',
        '-key',
        'client.key',
        '-CAfile',
        'server-root.pem',
        '-verify_return_error',
        '-ign_eof',
      ],
      { cwd: ossl.dir, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.stdin.end();
    // s_client's exit status is not asserted: OpenSSL 3 counts the server's close without close_notify as an error.
    await once(child, 'exit');
    assert.deepEqual(refusals, []);
    assert.match(out, /Verify return code: 0 \(ok\)/);
    assert.match(out, new RegExp(`hello ${ACTOR} grant=grant-tls`));
    assert.equal(accepted.length, 1);
  } finally {
    server.close();
  }
});

test('our client completes mTLS against openssl s_server, which verifies our client chain', async () => {
  ossl.write('gw.pem', gwCert.pem);
  ossl.write('gw-inter.pem', serverCa.inter.pem);
  ossl.writeKey('gw.key', gwKey.privateKey);
  ossl.write('client-root.pem', clientCa.root.pem);
  const child = spawn(
    'openssl',
    [
      's_server',
      '-accept',
      '127.0.0.1:0',
      '-naccept',
      '1',
      '-tls1_3',
      '-cert',
      'gw.pem',
      '-cert_chain',
      'gw-inter.pem',
      '-key',
      'gw.key',
      '-Verify',
      '3',
      '-verify_return_error',
      '-CAfile',
      'client-root.pem',
      '-rev',
    ],
    { cwd: ossl.dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  try {
    let out = '';
    child.stderr.on('data', (d) => {
      out += d;
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.on('exit', () => reject(new Error(`s_server exited: ${out}`)));
    });
    const { socket, peer } = await connectVerified(
      mtlsClientOptions({
        key: clientKey.privateKey,
        chain: [clientCert.pem, clientCa.inter.pem],
        anchors: serverCa.root.pem,
        host: '127.0.0.1',
        port,
      }),
      { anchors: serverCa.root.pem, purpose: 'serverAuth', expectedUri: GW },
      clock,
    );
    assert.deepEqual(peer.uris, [GW]);
    socket.write('olleh\n');
    const reply = await new Promise<string>((resolve) => socket.once('data', (d) => resolve(d.toString())));
    assert.match(reply, /hello/);
    socket.destroy();
    assert.doesNotMatch(out, /verify error/);
  } finally {
    child.kill();
  }
});
