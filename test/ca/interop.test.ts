/** What the CA issues is standard: `openssl verify` accepts each X.509 cert against the right CA only, and
 * `ssh-keygen -L` reads each OpenSSH cert with the fields SPEC §3 asks for. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { unwrap } from '../../lib/errors/codes.js';
import {
  clientKeys,
  csrFor,
  type Fixture,
  newAuthority,
  newOrg,
  openssl,
  pemCerts,
  sshKeygen,
  TempDir,
} from './helpers.js';

let f: Fixture;
const dir = new TempDir();
const files: Record<string, string> = {};

before(async () => {
  f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  await newOrg(f, 'globex');
  const gk = clientKeys('rsa-2048');
  const gw = unwrap(
    f.ca.enrollGateway(acme.orgAdmin, { orgId: 'acme', gatewayId: 'gw1', csr: gk.csr, sshPublicKey: gk.sshPublicKey }),
  );
  const ik = clientKeys();
  const ip = unwrap(
    f.ca.enrollProxy(f.admin, {
      scope: 'instance',
      proxyId: 'p1',
      hostnames: ['proxy.example.test', '127.0.0.1'],
      sshAddress: '127.0.0.1:2222',
      tlsAddress: '127.0.0.1:8443',
      csr: ik.csr,
      sshPublicKey: ik.sshPublicKey,
    }),
  );
  const ok = clientKeys();
  const op = unwrap(
    f.ca.enrollProxy(acme.orgAdmin, {
      scope: 'org',
      orgId: 'acme',
      proxyId: 'p2',
      hostnames: ['acme-proxy.example.test'],
      sshAddress: 'acme-proxy.example.test:22',
      tlsAddress: 'acme-proxy.example.test:443',
      csr: ok.csr,
      sshPublicKey: ok.sshPublicKey,
    }),
  );
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      subject: 'identity:alice',
      gateways: ['gw1'],
      targets: ['db.internal:5432'],
      modes: ['tcp'],
    }),
  );
  const g = unwrap(
    f.ca.issueGrant(acme.member, {
      orgId: 'acme',
      gatewayId: 'gw1',
      target: { host: 'db.internal', port: 5432 },
      mode: 'tcp',
      outerCsr: csrFor('rsa-2048').csr,
      innerCsr: csrFor().csr,
    }),
  );
  const k = f.ca.ctx.keyring;
  const save = (name: string, text: string) => {
    files[name] = dir.write(name, text);
  };
  for (const org of ['acme', 'globex'] as const) {
    for (const p of ['gateway-server', 'gateway-client', 'proxy-pki-client', 'proxy-pki-server'] as const) {
      save(`${org}-${p}.pem`, k.x509Pem(org, p));
    }
  }
  save('instance-proxy-pki-client.pem', k.x509Pem(null, 'proxy-pki-client'));
  save('instance-proxy-pki-server.pem', k.x509Pem(null, 'proxy-pki-server'));
  save('gateway.pem', pemCerts(gw.tlsCertificateChain)[0]!);
  save('instance-proxy.pem', pemCerts(ip.tlsCertificateChain)[0]!);
  save('org-proxy.pem', pemCerts(op.tlsCertificateChain)[0]!);
  save('inner.pem', pemCerts(g.innerCertificateChain)[0]!);
  save('outer-instance.pem', pemCerts(g.outerCertificateChains.instance!)[0]!);
  save('outer-org.pem', pemCerts(g.outerCertificateChains.org!)[0]!);
  save('gw-ssh-instance-cert.pub', `${gw.sshCertificates[0]!.certificate}\n`);
  save('gw-ssh-org-cert.pub', `${gw.sshCertificates[1]!.certificate}\n`);
  save('proxy-host-cert.pub', `${ip.sshHostCertificate}\n`);
  save('ssh-user-ca.pub', `${k.sshPublic(null, 'proxy-ssh-client')}\n`);
});
after(() => dir.remove());

function verify(
  ca: string,
  leaf: string,
  purpose: 'sslserver' | 'sslclient',
  extra: string[] = [],
): { ok: boolean; out: string } {
  const at = String(Math.floor(f.clock.ms / 1000) + 5);
  try {
    const out = openssl([
      'verify',
      '-x509_strict',
      '-attime',
      at,
      '-purpose',
      purpose,
      ...extra,
      '-CAfile',
      files[ca]!,
      files[leaf]!,
    ]);
    return { ok: /: OK/.test(out), out };
  } catch (err) {
    return { ok: false, out: String((err as { stderr?: string }).stderr ?? err) };
  }
}

test('openssl verify accepts every issued X.509 cert against its own CA', () => {
  const cases: [string, string, 'sslserver' | 'sslclient', string[]?][] = [
    ['acme-gateway-server.pem', 'gateway.pem', 'sslserver'],
    ['instance-proxy-pki-server.pem', 'instance-proxy.pem', 'sslserver', ['-verify_hostname', 'proxy.example.test']],
    ['instance-proxy-pki-server.pem', 'instance-proxy.pem', 'sslserver', ['-verify_ip', '127.0.0.1']],
    ['acme-proxy-pki-server.pem', 'org-proxy.pem', 'sslserver', ['-verify_hostname', 'acme-proxy.example.test']],
    ['acme-gateway-client.pem', 'inner.pem', 'sslclient'],
    ['instance-proxy-pki-client.pem', 'outer-instance.pem', 'sslclient'],
    ['acme-proxy-pki-client.pem', 'outer-org.pem', 'sslclient'],
  ];
  for (const [ca, leaf, purpose, extra] of cases) {
    const r = verify(ca, leaf, purpose, extra);
    assert.ok(r.ok, `${leaf} against ${ca}: ${r.out}`);
  }
});

test("openssl verify refuses an org's certs against another org's or the instance's CA (cryptographic isolation)", () => {
  const cases: [string, string, 'sslserver' | 'sslclient'][] = [
    ['globex-gateway-server.pem', 'gateway.pem', 'sslserver'],
    ['globex-gateway-client.pem', 'inner.pem', 'sslclient'],
    ['globex-proxy-pki-client.pem', 'outer-org.pem', 'sslclient'],
    ['instance-proxy-pki-client.pem', 'outer-org.pem', 'sslclient'],
    ['acme-proxy-pki-client.pem', 'outer-instance.pem', 'sslclient'],
    ['instance-proxy-pki-server.pem', 'org-proxy.pem', 'sslserver'],
    ['acme-gateway-client.pem', 'gateway.pem', 'sslserver'],
  ];
  for (const [ca, leaf, purpose] of cases) {
    const r = verify(ca, leaf, purpose);
    assert.equal(r.ok, false, `${leaf} must not verify against ${ca}`);
  }
  assert.equal(
    verify('acme-gateway-client.pem', 'inner.pem', 'sslserver').ok,
    false,
    'client cert is not a server cert',
  );
  const late = Math.floor(f.clock.ms / 1000) + 6 * 60;
  assert.throws(() =>
    openssl(['verify', '-attime', String(late), '-CAfile', files['acme-gateway-client.pem']!, files['inner.pem']!]),
  );
});

test('openssl reads the SPIFFE URI SAN and the grant/route extensions', () => {
  const inner = openssl(['x509', '-noout', '-text', '-in', files['inner.pem']!]);
  assert.match(inner, /URI:spiffe:\/\/example\.test\/org\/acme\/identity\/alice/);
  assert.match(inner, /2\.25\.164606950001041719975179529538499735090\.1:/);
  assert.match(inner, /TLS Web Client Authentication/);
  const outer = openssl(['x509', '-noout', '-text', '-in', files['outer-org.pem']!]);
  assert.match(outer, /2\.25\.164606950001041719975179529538499735090\.2:/);
  const gw = openssl(['x509', '-noout', '-text', '-in', files['gateway.pem']!]);
  assert.match(gw, /URI:spiffe:\/\/example\.test\/org\/acme\/gateway\/gw1/);
  assert.match(gw, /TLS Web Server Authentication/);
  assert.match(gw, /Serial Number:\s*\n?\s*[0-9a-f:]{40,}/i, 'a long random serial');
});

test('ssh-keygen -L reads the gateway user certs and the proxy host cert', () => {
  for (const name of ['gw-ssh-instance-cert.pub', 'gw-ssh-org-cert.pub']) {
    const out = sshKeygen(['-L', '-f', files[name]!]);
    assert.match(out, /Type: ssh-ed25519-cert-v01@openssh\.com user certificate/);
    assert.match(out, /Key ID: "spiffe:\/\/example\.test\/org\/acme\/gateway\/gw1"/);
    assert.match(out, /Principals:\s*\n\s*gw1\s*\n/);
    assert.match(out, /Critical Options: \(none\)/);
    assert.match(out, /Extensions:\s*\n\s*permit-port-forwarding\s*\n?$/);
    const valid = /Valid: from (\S+) to (\S+)/.exec(out);
    assert.ok(valid);
    const hours = (Date.parse(`${valid[2]}Z`) - Date.parse(`${valid[1]}Z`)) / 3_600_000;
    assert.ok(hours <= 24, `lifetime ${hours} h`);
  }
  const host = sshKeygen(['-L', '-f', files['proxy-host-cert.pub']!]);
  assert.match(host, /host certificate/);
  assert.match(host, /Principals:\s*\n\s*proxy\.example\.test\s*\n\s*127\.0\.0\.1/);
  const ca = sshKeygen(['-l', '-f', files['ssh-user-ca.pub']!]);
  const signer = sshKeygen(['-L', '-f', files['gw-ssh-instance-cert.pub']!]);
  const caFp = /SHA256:\S+/.exec(ca)?.[0];
  assert.ok(caFp && signer.includes(`Signing CA: ED25519 ${caFp}`), 'signed by the instance SSH client CA');
});
