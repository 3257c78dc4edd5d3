/**
 * Our ssh2 client against our ssh2 server, both with certificates made by lib/sshcert: the path between a
 * gateway and a proxy, including the reverse tunnel (tcpip-forward, then forwarded-tcpip channels).
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import ssh2 from 'ssh2';
import { type ErrorCode, GatewayError } from '../../lib/errors/codes.js';
import { publicKeyBlob, signCertificate, toOpenSshPrivateKey } from '../../lib/sshcert/index.js';
import { type CertClientOptions, connectWithCertificate } from '../../lib/sshwire/client.js';
import { createCertServer, listen } from '../../lib/sshwire/server.js';
import type { ClientChannel, Server, ServerChannel } from '../../lib/sshwire/ssh2.js';
import { type AuthenticateOptions, authenticateUser } from '../helpers/ssh-auth.js';

const nowS = Math.floor(Date.now() / 1000);

interface Party {
  key: KeyObject;
  pem: string;
  blob: Buffer;
}
function party(type: 'ed25519' | 'rsa' = 'ed25519'): Party {
  const { privateKey } =
    type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
  return { key: privateKey, pem: toOpenSshPrivateKey(privateKey), blob: publicKeyBlob(privateKey) };
}
function certify(ca: Party, subject: Party, type: 'user' | 'host', principals: string[], lifetime = 3600): Buffer {
  return signCertificate(
    {
      publicKey: subject.blob,
      type,
      keyId: `${type}:${principals[0]}`,
      principals,
      validAfter: BigInt(nowS - 60),
      validBefore: BigInt(nowS + lifetime),
      ...(type === 'user' ? { extensions: { 'permit-port-forwarding': '' } } : {}),
    },
    ca.key,
  );
}

const userCa = party();
const hostCa = party();
const otherCa = party();
const proxyKey = party();
const proxyCert = certify(hostCa, proxyKey, 'host', ['proxy.test']);
const gwKey = party();
const gwCert = certify(userCa, gwKey, 'user', ['gw1']);

const servers: Server[] = [];
after(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

/** ssh2 internals a test reaches into: the per-connection host key table the patch reads. */
interface ConnInternals {
  rekey(cb: (err?: Error) => void): void;
  _protocol: { _hostKeys: Record<string, unknown> };
}

type Outcome = { ok: true; principal: string } | { ok: false; code: ErrorCode };

/**
 * A proxy-like server: authenticates with authenticateUser, grants a tcpip-forward only for the
 * certificate's principal, and on demand opens a forwarded-tcpip channel back to the client.
 */
async function startProxy(
  host: { key: Party; cert: Buffer } = { key: proxyKey, cert: proxyCert },
  auth: Partial<AuthenticateOptions> = {},
) {
  const outcomes: Outcome[] = [];
  let openBack: ((cb: (ch: ServerChannel) => void) => void) | undefined;
  let rekey: (() => Promise<void>) | undefined;
  let swapHostCert: ((certified: { key: unknown; certificate: Buffer }) => void) | undefined;
  const server = createCertServer({ hostKey: host.key.pem, hostCertificate: host.cert }, (conn) => {
    conn.on('error', () => {});
    authenticateUser(conn, { trustedUserCaKeys: [userCa.blob], ...auth }).then(
      (cert) => {
        outcomes.push({ ok: true, principal: cert.principals[0]! });
        // @types/ssh2 misses the callback's error argument
        const conn_ = conn as unknown as ConnInternals;
        rekey = () => new Promise<void>((resolve, reject) => conn_.rekey((err) => (err ? reject(err) : resolve())));
        swapHostCert = (certified) => {
          conn_._protocol._hostKeys['ssh-ed25519-cert-v01@openssh.com'] = certified;
        };
        conn.on('request', (acceptReq, rejectReq, name, info) => {
          if (name !== 'tcpip-forward' || !acceptReq || !rejectReq) return rejectReq?.();
          const bind = info as { bindAddr: string; bindPort: number };
          if (!cert.principals.includes(bind.bindAddr)) return rejectReq();
          acceptReq(bind.bindPort || 1);
          openBack = (cb) =>
            conn.forwardOut(bind.bindAddr, bind.bindPort || 1, '203.0.113.7', 40000, (err, ch) => {
              assert.ifError(err);
              cb(ch);
            });
        });
      },
      (err: GatewayError) => outcomes.push({ ok: false, code: err.code }),
    );
  });
  servers.push(server);
  const port = await listen(server, 0);
  return {
    port,
    outcomes,
    openBack: () => openBack,
    rekey: () => rekey!(),
    swapHostCert: (c: { key: unknown; certificate: Buffer }) => swapHostCert!(c),
  };
}

function clientOptions(port: number, over: Partial<CertClientOptions> = {}): CertClientOptions {
  return {
    host: '127.0.0.1',
    port,
    username: 'gw1',
    privateKey: gwKey.pem,
    certificate: gwCert,
    trustedHostCaKeys: [hostCa.blob],
    hostPrincipal: 'proxy.test',
    ...over,
  };
}

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.then(
    () => assert.fail('connection should have been refused'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
  return err;
}

const forwardIn = (c: ssh2.Client, addr: string): Promise<number> =>
  new Promise((resolve, reject) => c.forwardIn(addr, 0, (err, p) => (err ? reject(err) : resolve(p))));

/** Sends `payload` down a forwarded-tcpip channel; the client side echoes; returns the echo's SHA-256. */
async function roundTrip(proxy: Awaited<ReturnType<typeof startProxy>>, payload: Buffer): Promise<string> {
  const open = proxy.openBack();
  assert.ok(open, 'forward was granted');
  return new Promise((resolve) => {
    open((ch) => {
      const h = createHash('sha256');
      ch.on('data', (d: Buffer) => h.update(d)).on('end', () => resolve(h.digest('hex')));
      ch.end(payload);
    });
  });
}

function echoForwards(client: ssh2.Client): void {
  client.on('tcp connection', (info, acceptConn) => {
    assert.equal(info.destIP, 'gw1');
    const ch: ClientChannel = acceptConn();
    ch.pipe(ch);
  });
}

test('gateway-like client and proxy-like server: both certificates, reverse tunnel carrying bytes', async () => {
  const proxy = await startProxy();
  const { client, hostCertificate } = await connectWithCertificate(clientOptions(proxy.port));
  try {
    assert.equal(hostCertificate.keyId, 'host:proxy.test');
    assert.deepEqual(proxy.outcomes, [{ ok: true, principal: 'gw1' }]);
    echoForwards(client);
    await forwardIn(client, 'gw1');
    const payload = randomBytes(4 * 1024 * 1024);
    const sent = createHash('sha256').update(payload).digest('hex');
    assert.equal(await roundTrip(proxy, payload), sent);
    // a re-key signs with the host certificate again; the client accepts the same one; the tunnel lives on
    await proxy.rekey();
    assert.equal(await roundTrip(proxy, payload), sent);
    await assert.rejects(forwardIn(client, 'gw2'), 'a forward for another name is refused');
  } finally {
    client.end();
  }
});

test('on a re-key, the client refuses a host certificate other than the one it verified', async () => {
  const proxy = await startProxy();
  const { client } = await connectWithCertificate(clientOptions(proxy.port));
  const clientError = new Promise<Error>((resolve) => client.on('error', resolve));
  // another key with a valid certificate from the same CA: acceptable on a first connection, not mid-session
  const other = party();
  const parsed = ssh2.utils.parseKey(other.pem);
  assert.ok(!(parsed instanceof Error));
  proxy.swapHostCert({ key: parsed, certificate: certify(hostCa, other, 'host', ['proxy.test']) });
  const outcome = await Promise.race([clientError.then((e) => e.message), proxy.rekey().then(() => 'rekeyed')]);
  assert.match(outcome, /Host denied/);
  client.end();
});

test('RSA host and user certificates (rsa-sha2-512-cert-v01) work end to end', async () => {
  const rsaHost = party('rsa');
  const rsaUser = party('rsa');
  const proxy = await startProxy({ key: rsaHost, cert: certify(hostCa, rsaHost, 'host', ['proxy.test']) });
  const debug: string[] = [];
  const { client, hostCertificate } = await connectWithCertificate(
    clientOptions(proxy.port, {
      privateKey: rsaUser.pem,
      certificate: certify(userCa, rsaUser, 'user', ['gw1']),
      debug: (line) => debug.push(line),
    }),
  );
  client.end();
  assert.equal(hostCertificate.certAlgorithm, 'ssh-rsa-cert-v01@openssh.com');
  assert.ok(debug.includes('Handshake: Host key format: rsa-sha2-512-cert-v01@openssh.com'), debug.join('\n'));
  assert.deepEqual(proxy.outcomes, [{ ok: true, principal: 'gw1' }]);
});

test('the server refuses a user certificate from another CA', async () => {
  const proxy = await startProxy();
  const err = await refusal(
    connectWithCertificate(clientOptions(proxy.port, { certificate: certify(otherCa, gwKey, 'user', ['gw1']) })),
  );
  assert.equal(err.code, 'E_SSH_AUTH');
  await waitFor(() => proxy.outcomes.length > 0);
  assert.deepEqual(proxy.outcomes, [{ ok: false, code: 'E_CERT_UNTRUSTED' }]);
});

test('the server refuses a host certificate presented as a user certificate', async () => {
  const proxy = await startProxy();
  const err = await refusal(
    connectWithCertificate(clientOptions(proxy.port, { certificate: certify(userCa, gwKey, 'host', ['gw1']) })),
  );
  assert.equal(err.code, 'E_SSH_AUTH');
  await waitFor(() => proxy.outcomes.length > 0);
  assert.deepEqual(proxy.outcomes, [{ ok: false, code: 'E_CERT_WRONG_TYPE' }]);
});

test('the server refuses an expired user certificate (by its injected clock)', async () => {
  const proxy = await startProxy(undefined, { now: () => Date.now() + 2 * 3600_000 });
  const err = await refusal(connectWithCertificate(clientOptions(proxy.port)));
  assert.equal(err.code, 'E_SSH_AUTH');
  await waitFor(() => proxy.outcomes.length > 0);
  assert.deepEqual(proxy.outcomes, [{ ok: false, code: 'E_CERT_EXPIRED' }]);
});

test('the server refuses a plain key', async () => {
  const proxy = await startProxy();
  const err = await new Promise<Error>((resolve) => {
    const c = new ssh2.Client();
    c.on('error', resolve).on('ready', () => resolve(new Error('accepted')));
    c.connect({ host: '127.0.0.1', port: proxy.port, username: 'gw1', privateKey: gwKey.pem });
  });
  assert.match(err.message, /All configured authentication methods failed/);
  await waitFor(() => proxy.outcomes.length > 0);
  assert.deepEqual(proxy.outcomes, [{ ok: false, code: 'E_SSH_AUTH' }]);
});

test('the client refuses a host certificate from another CA', async () => {
  const proxy = await startProxy({ key: proxyKey, cert: certify(otherCa, proxyKey, 'host', ['proxy.test']) });
  const err = await refusal(connectWithCertificate(clientOptions(proxy.port)));
  assert.equal(err.code, 'E_SSH_HOST_CERT');
  assert.match(err.message, /E_CERT_UNTRUSTED/);
});

test('the client refuses a user certificate offered as the host certificate', async () => {
  const proxy = await startProxy({ key: proxyKey, cert: certify(hostCa, proxyKey, 'user', ['proxy.test']) });
  const err = await refusal(connectWithCertificate(clientOptions(proxy.port)));
  assert.equal(err.code, 'E_SSH_HOST_CERT');
  assert.match(err.message, /E_CERT_WRONG_TYPE/);
});

test('a host certificate is worthless without its key: the exchange must be signed by the certified key', async () => {
  const thief = party();
  const thiefKey = ssh2.utils.parseKey(thief.pem);
  assert.ok(!(thiefKey instanceof Error));
  // A server that presents the proxy's (valid) certificate but holds another key
  const server = createCertServer({ hostKey: proxyKey.pem, hostCertificate: proxyCert }, (conn) => {
    conn.on('error', () => {});
    (conn as unknown as ConnInternals)._protocol._hostKeys['ssh-ed25519-cert-v01@openssh.com'] = {
      key: thiefKey,
      certificate: proxyCert,
    };
  });
  servers.push(server);
  const port = await listen(server, 0);
  const err = await connectWithCertificate(clientOptions(port)).then(
    () => assert.fail('connection should have been refused'),
    (e: Error) => e,
  );
  assert.match(err.message, /signature verification failed/);
});

test('a server refuses to start with a certificate for another key', () => {
  assert.throws(
    () => createCertServer({ hostKey: proxyKey.pem, hostCertificate: certify(hostCa, gwKey, 'host', ['x']) }),
    /does not certify its key/,
  );
});

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 250 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
}
