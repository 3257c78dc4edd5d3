/** Pure decisions of the gateway: reconnect backoff, renewal scheduling, allowlist. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { earliestRenewal, renewalDelay, renewalTime } from '../../lib/enrolled/renewal.js';
import {
  type Allowlist,
  type AllowlistConfig,
  checkAddress,
  checkTarget,
  parseAllowlist,
  resolveTarget,
} from '../../lib/gateway/allowlist.js';
import {
  attemptAfterTunnel,
  backoffCeiling,
  backoffDelay,
  classifyFailure,
  DEFAULT_BACKOFF,
  retryDelay,
} from '../../lib/gateway/backoff.js';

describe('backoff', () => {
  it('grows exponentially from 250 ms and stops at the cap', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((a) => backoffCeiling(a)),
      [250, 500, 1000, 2000, 4000],
    );
    assert.equal(backoffCeiling(50), DEFAULT_BACKOFF.capMs);
    assert.equal(backoffCeiling(10_000), DEFAULT_BACKOFF.capMs);
  });
  it('draws uniformly below the ceiling (full jitter); the first retry waits at most 250 ms', () => {
    assert.equal(
      backoffDelay(0, () => 0),
      0,
    );
    assert.equal(
      backoffDelay(0, () => 0.5),
      125,
    );
    assert.ok(backoffDelay(0, () => 0.999999) < 250);
    assert.ok(backoffDelay(0, () => 1) < 250, 'a random source returning 1 still stays below the ceiling');
    assert.equal(
      backoffDelay(3, () => 0.5),
      1000,
    );
    assert.equal(
      backoffDelay(3, () => Number.NaN),
      0,
    );
    const many = Array.from({ length: 1000 }, () => backoffDelay(40, Math.random));
    assert.ok(many.every((d) => d >= 0 && d < DEFAULT_BACKOFF.capMs));
  });
  it('resets after a stable tunnel, grows after a flap', () => {
    assert.equal(attemptAfterTunnel(5, 60_000), 0);
    assert.equal(attemptAfterTunnel(5, 100), 5);
  });
});

describe('retry after a failure, by kind', () => {
  it('a proxy that is not there (refused, reset, no route) is asked again within a second, whatever the attempt', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH']) {
      assert.equal(classifyFailure(Object.assign(new Error(`connect ${code}`), { code })), 'unreachable');
    }
    for (const attempt of [0, 3, 10, 50]) {
      assert.ok(retryDelay(attempt, 'unreachable', () => 0.999) < 1000);
    }
  });
  it('a proxy that answered and refused (certificate, auth, timeout) backs off hard, up to the cap', () => {
    assert.equal(classifyFailure(Object.assign(new Error('host cert'), { code: 'E_SSH_HOST_CERT' })), 'refused');
    assert.equal(classifyFailure(new Error('no code')), 'refused');
    assert.ok(retryDelay(10, 'refused', () => 0.999) > 20_000);
    assert.ok(retryDelay(10, 'refused', () => 0.999) < DEFAULT_BACKOFF.capMs);
  });
});

describe('renewal schedule', () => {
  const cert = { notBefore: new Date(0), notAfter: new Date(3_000_000) };
  it('lands at two thirds of the lifetime, jittered by ±5 %', () => {
    assert.equal(
      renewalTime(cert, () => 0.5),
      2_000_000,
    );
    assert.equal(
      renewalTime(cert, () => 0),
      2_000_000 - 150_000,
    );
    assert.equal(
      renewalTime(cert, () => 1),
      2_000_000 + 150_000,
    );
  });
  it('never schedules in the past: a late renewal is soon, not a spin', () => {
    assert.equal(
      renewalDelay(cert, 2_500_000, () => 0.5),
      1000,
    );
    assert.equal(
      renewalDelay(cert, 1_000_000, () => 0.5),
      1_000_000,
    );
  });
  it('renews the whole set at the earliest cert', () => {
    const short = { notBefore: new Date(0), notAfter: new Date(300_000) };
    assert.equal(
      earliestRenewal([cert, short], 0, () => 0.5),
      200_000,
    );
    assert.equal(
      earliestRenewal([], 0, () => 0.5),
      undefined,
    );
  });
});

describe('allowlist', () => {
  const base: AllowlistConfig = {
    cidrs: ['10.0.0.0/24', '127.0.0.1', 'fd00::/8'],
    hosts: ['db.internal', '*.svc.internal'],
    ports: ['5432', '8000-8099'],
    targets: ['pg=db.internal:5432', 'api=10.0.0.9:8080', 'far=10.9.9.9:5432'],
  };
  const list = (over: Partial<AllowlistConfig> = {}): Allowlist => {
    const v = parseAllowlist({ ...base, ...over });
    assert.ok(v.ok, v.ok ? '' : v.reason);
    return v.value;
  };
  const refusal = (v: { ok: boolean; code?: string; reason?: string }) => {
    assert.equal(v.ok, false);
    assert.equal(v.code, 'E_TARGET_NOT_ALLOWED');
    return v.reason ?? '';
  };

  it('accepts a listed address and port', () => {
    const v = checkAddress(list(), { host: '10.0.0.7', port: 5432 }, '10.0.0.7');
    assert.ok(v.ok);
    assert.equal(v.value.address, '10.0.0.7');
    assert.ok(checkAddress(list(), { host: 'fd00::1', port: 8050 }, 'fd00::1').ok);
  });
  it('denies everything when nothing is listed', () => {
    const empty = list({ cidrs: [], hosts: [], ports: [], targets: [] });
    assert.match(refusal(checkTarget(empty, { host: '10.0.0.7', port: 5432 })), /allow_ports/);
    assert.match(refusal(checkAddress(empty, { host: '10.0.0.7', port: 5432 }, '10.0.0.7')), /allow_cidrs/);
  });
  it('refuses an unlisted port, naming allow_ports', () => {
    assert.match(refusal(checkTarget(list(), { host: '10.0.0.7', port: 22 })), /add 22 to allow_ports/);
    assert.match(refusal(checkTarget(list(), { host: '10.0.0.7', port: 8100 })), /allow_ports/);
  });
  it('refuses an address outside every CIDR, naming allow_cidrs', () => {
    assert.match(
      refusal(checkAddress(list(), { host: '10.0.1.7', port: 5432 }, '10.0.1.7')),
      /10\.0\.1\.7\/32 to allow_cidrs/,
    );
    assert.match(refusal(checkAddress(list(), { host: '::1', port: 5432 }, '::1')), /::1\/128 to allow_cidrs/);
  });
  it('treats an IPv4-mapped IPv6 address as IPv4', () => {
    assert.ok(checkAddress(list(), { host: 'x', port: 5432 }, '::ffff:10.0.0.3').ok);
    refusal(checkAddress(list(), { host: 'x', port: 5432 }, '::ffff:192.168.1.1'));
  });
  describe('IPv4 is judged by IPv4 rules only, whatever its notation', () => {
    const v4Forms = ['127.0.0.1', '::ffff:127.0.0.1', '::FFFF:7f00:1', '::127.0.0.1', '0:0:0:0:0:ffff:7f00:0001'];
    const judge = (cidrs: string[], address: string) =>
      checkAddress(list({ cidrs }), { host: address, port: 5432 }, address);
    for (const cidrs of [['::/0'], ['::ffff:0:0/96'], ['::/96'], ['::/0', '::ffff:0:0/96', '10.0.0.0/8']]) {
      for (const address of v4Forms) {
        it(`${cidrs.join(',')} refuses ${address}`, () => {
          assert.match(refusal(judge(cidrs, address)), /127\.0\.0\.1\/32 to allow_cidrs/);
        });
      }
    }
    for (const address of v4Forms) {
      it(`127.0.0.0/8 admits ${address} as 127.0.0.1`, () => {
        const v = judge(['127.0.0.0/8'], address);
        assert.ok(v.ok, v.ok ? '' : v.reason);
        assert.equal(v.value.address, '127.0.0.1');
      });
      it(`a mapped entry is its IPv4 CIDR: ::ffff:127.0.0.0/104 admits ${address}`, () => {
        const v = judge(['::ffff:127.0.0.0/104'], address);
        assert.ok(v.ok, v.ok ? '' : v.reason);
        assert.equal(v.value.address, '127.0.0.1');
      });
    }
    const table: [string[], string, boolean][] = [
      [['::ffff:10.0.0.0/104'], '10.200.0.1', true],
      [['::ffff:10.0.0.0/104'], '11.0.0.1', false],
      [['::ffff:a00:0/104'], '::ffff:10.1.2.3', true],
      [['::/0'], '2001:db8::1', true],
      [['::/0'], '::1', true],
      [['fd00::/8'], 'fd12::7', true],
      [['fd00::/8'], 'fe80::1', false],
      [['::1/128'], '::1', true],
      [['::1/128'], '0.0.0.1', false],
      [['0.0.0.0/0'], '::ffff:8.8.8.8', true],
      [['0.0.0.0/0'], '2001:db8::1', false],
    ];
    for (const [cidrs, address, admitted] of table) {
      it(`${cidrs.join(',')} ${admitted ? 'admits' : 'refuses'} ${address}`, () => {
        const v = judge(cidrs, address);
        if (admitted) assert.ok(v.ok, v.ok ? '' : v.reason);
        else refusal(v);
      });
    }
    it('refuses a zoned target even under ::/0, saying why', () => {
      assert.match(refusal(judge(['::/0', 'fe80::/10'], 'fe80::1%eth0')), /carries a zone/);
    });
    it('refuses a zoned allow_cidrs entry at parse time', () => {
      const v = parseAllowlist({ ...base, cidrs: ['fe80::%eth0/64'] });
      assert.equal(v.ok, false);
      assert.equal(!v.ok && v.code, 'E_CONFIG_INVALID');
      assert.match(!v.ok ? v.reason : '', /zone/);
    });
    it('judges a name that resolved to a mapped address as the IPv4 address', async () => {
      const only6 = list({ cidrs: ['::/0'] });
      const mapped = async () => ['::ffff:7f00:1'];
      const refused = await resolveTarget(only6, { host: 'db.internal', port: 5432 }, mapped);
      assert.match(refusal(refused), /127\.0\.0\.1 \(written ::ffff:7f00:1\) \(resolved from "db.internal"\)/);
      const ok = await resolveTarget(list({ cidrs: ['127.0.0.0/8'] }), { host: 'db.internal', port: 5432 }, mapped);
      assert.ok(ok.ok);
      assert.equal(ok.value.address, '127.0.0.1');
    });
  });
  it('refuses an unlisted host name, naming allow_hosts; wildcards cover subdomains only', () => {
    assert.match(refusal(checkTarget(list(), { host: 'evil.example', port: 5432 })), /allow_hosts/);
    assert.ok(checkTarget(list(), { host: 'DB.internal', port: 5432 }).ok);
    assert.ok(checkTarget(list(), { host: 'a.svc.internal', port: 5432 }).ok);
    refusal(checkTarget(list(), { host: 'svc.internal', port: 5432 }));
    refusal(checkTarget(list(), { host: 'xsvc.internal', port: 5432 }));
  });
  it('checks the address a listed name resolved to, resolving it once', async () => {
    let lookups = 0;
    const resolver = (addr: string) => async () => {
      lookups++;
      return [addr];
    };
    const ok = await resolveTarget(list(), { host: 'db.internal', port: 5432 }, resolver('10.0.0.5'));
    assert.ok(ok.ok);
    assert.deepEqual(ok.value, { host: 'db.internal', port: 5432, address: '10.0.0.5' });
    assert.equal(lookups, 1);
    const rebound = await resolveTarget(list(), { host: 'db.internal', port: 5432 }, resolver('169.254.169.254'));
    assert.match(refusal(rebound), /169\.254\.169\.254 \(resolved from "db.internal"\)/);
  });
  it('resolves named targets from the targets key and still checks them', async () => {
    const r = async () => ['10.0.0.5'];
    const pg = await resolveTarget(list(), { name: 'pg' }, r);
    assert.ok(pg.ok);
    assert.equal(pg.value.name, 'pg');
    assert.equal(pg.value.port, 5432);
    assert.ok((await resolveTarget(list(), { name: 'api' }, r)).ok);
    assert.match(refusal(await resolveTarget(list(), { name: 'nope' }, r)), /add "nope=host:port" to targets/);
    assert.match(refusal(await resolveTarget(list(), { name: 'far' }, r)), /allow_cidrs/);
  });
  it('reports a failed resolution as unreachable, not allowed', async () => {
    const v = await resolveTarget(list(), { host: 'db.internal', port: 5432 }, async () => {
      throw new Error('ENOTFOUND');
    });
    assert.equal(v.ok, false);
    assert.equal(v.ok ? '' : v.code, 'E_TARGET_UNREACHABLE');
  });
  it('refuses bad config entries all at once', () => {
    const v = parseAllowlist({
      cidrs: ['10.0.0.0/33', 'x'],
      hosts: ['1.2.3.4'],
      ports: ['0', '9-8'],
      targets: ['a=b'],
    });
    assert.equal(v.ok, false);
    const reason = v.ok ? '' : v.reason;
    for (const key of ['allow_cidrs', 'allow_hosts', 'allow_ports', 'targets']) assert.match(reason, new RegExp(key));
    assert.equal(v.ok ? '' : v.code, 'E_CONFIG_INVALID');
  });
});
