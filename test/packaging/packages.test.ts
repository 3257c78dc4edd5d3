/**
 * The packages for real: `make package` output (built here into a private directory), checked as files (the
 * standalone binaries without Node, rpm metadata and signatures, a no-scripts rpm install into a root, the deb's
 * conffile), then installed from the offline bundle into a booted Debian 12 (systemd-nspawn; install.sh for the
 * client, `apt-get install` from the bundle's signed apt repository for the daemons) and run under systemd:
 * start to READY under the full sandbox, reload, enroll a proxy and a gateway, pass a connection through them,
 * reload both relays during a 12 s transfer (no byte lost),
 * stop cleanly, watchdog restarts, purge. Skipped (with the reason) only where nspawn/debootstrap are missing.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Built, buildPackages, PROGRAMS, rootfs, timed } from './build.js';
import { Container, missingPrerequisite, run } from './container.js';

const missing = missingPrerequisite();
const DAEMONS = ['ca', 'proxy', 'gateway'] as const;
const json = <T>(text: string): T => JSON.parse(text) as T;

describe('packages', { skip: missing ? `packaging tests skipped: ${missing}` : false, timeout: 15 * 60_000 }, () => {
  let built: Built;
  let box: Container;
  const started = Date.now();

  before(async () => {
    built = await buildPackages();
  });
  after(async () => {
    await box?.destroy();
    built?.remove();
    console.log(`# timing: packaging tests total ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  it('standalone binaries: --version and --help with no Node on PATH', async () => {
    for (const p of PROGRAMS) {
      const bin = built.sea(`infisical-${p}`);
      const env = { PATH: '/nonexistent' };
      const version = await run(bin, ['--version'], { env });
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout.trim(), built.version);
      const help = await run(bin, ['--help'], { env });
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, new RegExp(`infisical-${p}`));
    }
    // The CA's PostgreSQL store rides in the binary (libpq's addon, linked to the system's libpq.so.5): a store
    // nobody listens on is refused by libpq itself, not for a missing binding.
    const state = mkdtempSync(join(tmpdir(), 'infisical-sea-ca-'));
    const pg = await run(
      built.sea('infisical-ca'),
      ['init', '--state-dir', state, '--store', 'postgres://infisical@127.0.0.1:1/none'],
      { env: { PATH: '/nonexistent' } },
    );
    rmSync(state, { recursive: true, force: true });
    assert.match(pg.stderr, /E_STORE_UNAVAILABLE: .*Connection refused/, pg.stderr);
  });

  it('rpm: file lists, digests and signatures, and a no-scripts install into an empty root', async () => {
    const root = mkdtempSync(join(tmpdir(), 'infisical-rpmroot-'));
    const keyring = mkdtempSync(join(tmpdir(), 'infisical-rpmdb-'));
    try {
      // Signed with the bundle's repository key: unknown to rpm until imported.
      const unknown = await run('rpm', ['--dbpath', keyring, '-K', ...Object.values(built.rpms)]);
      assert.equal(unknown.stdout.match(/digests SIGNATURES NOT OK$/gm)?.length, PROGRAMS.length, unknown.stdout);
      await run('rpm', ['--dbpath', keyring, '--import', join(built.unpacked, 'repo-key.asc')]);
      for (const p of PROGRAMS) {
        const list = (await run('rpm', ['-qpl', built.rpms[p]!])).stdout.split('\n');
        for (const f of [
          `/usr/bin/infisical-${p}`,
          `/usr/share/man/man1/infisical-${p}.1.gz`,
          `/usr/share/bash-completion/completions/infisical-${p}`,
        ]) {
          assert.ok(list.includes(f), `${p}: ${f} not in the rpm: ${list.join(' ')}`);
        }
        const check = await run('rpm', ['--dbpath', keyring, '-K', built.rpms[p]!]);
        assert.equal(check.code, 0, check.stderr);
        assert.match(check.stdout, /digests signatures OK/);
        if (p === 'connect') continue;
        for (const f of [
          `/usr/lib/systemd/system/infisical-${p}.service`,
          `/usr/lib/sysusers.d/infisical-${p}.conf`,
          `/etc/infisical/${p}.conf`,
          `/var/lib/infisical-${p}`,
        ]) {
          assert.ok(list.includes(f), `${p}: ${f} not in the rpm`);
        }
        const config = await run('rpm', ['-qpc', built.rpms[p]!]);
        assert.equal(config.stdout.trim(), `/etc/infisical/${p}.conf`);
      }
      await run('rpm', ['--root', root, '--initdb']);
      const install = await run('rpm', ['-i', '--root', root, '--nodeps', '--noscripts', ...Object.values(built.rpms)]);
      assert.equal(install.code, 0, install.stderr);
      assert.equal(statSync(join(root, 'var/lib/infisical-ca')).mode & 0o777, 0o700);
      assert.equal(statSync(join(root, 'etc/infisical/ca.conf')).mode & 0o777, 0o640);
      const version = await run(join(root, 'usr/bin/infisical-gateway'), ['--version'], { env: { PATH: '/none' } });
      assert.equal(version.stdout.trim(), built.version);
    } finally {
      rmSync(root, { recursive: true, force: true });
      rmSync(keyring, { recursive: true, force: true });
    }
  });

  it('deb: conffile is the sample rendered from the schema; man page and completion; dependencies are base-system libraries, sqlite3 recommended for the CA', async () => {
    for (const p of DAEMONS) {
      const conffiles = await run('dpkg-deb', ['-I', built.debs[p]!, 'conffiles']);
      assert.equal(conffiles.stdout.trim(), `/etc/infisical/${p}.conf`);
      const conf = await run('sh', [
        '-c',
        `dpkg-deb --fsys-tarfile "$1" | tar -xO ./etc/infisical/${p}.conf`,
        'x',
        built.debs[p]!,
      ]);
      assert.match(conf.stdout, new RegExp(`^# /etc/infisical/${p}\\.conf: configuration of infisical-${p}`));
      assert.match(conf.stdout, /^#log_level = info$/m);
      // Every key commented out: the packaged file changes nothing until the operator edits it.
      assert.equal(conf.stdout.split('\n').filter((l) => l.trim() && !l.startsWith('#')).length, 0);
    }
    for (const p of PROGRAMS) {
      const files = (await run('dpkg-deb', ['-c', built.debs[p]!])).stdout;
      assert.match(files, new RegExp(` \\./usr/share/man/man1/infisical-${p}\\.1\\.gz$`, 'm'), `${p}: man page`);
      assert.match(files, new RegExp(` \\./usr/share/bash-completion/completions/infisical-${p}$`, 'm'));
      const fields = (await run('dpkg-deb', ['-f', built.debs[p]!, 'Depends', 'Recommends'])).stdout;
      assert.doesNotMatch(fields, /nodejs/);
      // sqlite3 (the CA's online backup, docs/operations.md) and libpq (its PostgreSQL store) are recommended,
      // never required: the offline bundle installs with --no-install-recommends on hosts whose apt cannot fetch
      // anything, and a CA on SQLite needs neither.
      assert.doesNotMatch(fields, /^Depends:.*(sqlite|libpq)/m, p);
      assert.equal(/^Recommends: sqlite3, libpq5$/m.test(fields), p === 'ca', `${p}: ${fields}`);
      const recommends = (await run('rpm', ['-qp', '--recommends', built.rpms[p]!])).stdout.trim();
      assert.equal(recommends, p === 'ca' ? 'libpq\nsqlite' : '', `${p} rpm recommends`);
    }
  });

  describe('on a booted Debian 12 (systemd-nspawn)', () => {
    const units = (d: string) => `infisical-${d}.service`;
    let fingerprint = '';

    before(async () => {
      const tar = await rootfs();
      box = await timed('boot the container', () => Container.boot(tar));
      copyFileSync(built.bundle, join(box.root, 'root/offline.tar.gz'));
      copyFileSync(built.releasePub, join(box.root, 'root/pinned.pub'));
      copyFileSync(built.sea('infisical-test-probe'), join(box.root, 'usr/local/bin/infisical-test-probe'));
    });

    it('offline bundle: verified with the container’s openssl; install.sh with the pinned key; the daemons from the local apt repository, no network', async () => {
      // Where INSTALL.md keeps it: readable by apt's _apt user.
      await box.must(['tar', '-C', '/opt', '-xzf', '/root/offline.tar.gz']);
      const bundle = `/opt/infisical-offline-${built.version}`;
      // The signature half of the verify step, with this Debian's own openssl and the pinned key (install.sh
      // below runs it again, and the checksums; tampered bundles: bundle.test.ts).
      const verified = await box.exec([
        'sh',
        '-c',
        'cd "$1" && openssl pkeyutl -verify -pubin -inkey /root/pinned.pub -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig',
        'verify',
        bundle,
      ]);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      assert.match(verified.stdout, /Signature Verified Successfully/);

      const env = { DEBIAN_FRONTEND: 'noninteractive' };
      const script = await timed('install.sh: infisical-connect', () =>
        box.exec([`${bundle}/install.sh`, '--release-key', '/root/pinned.pub', 'connect'], { env }),
      );
      assert.equal(script.code, 0, script.stdout + script.stderr);

      await box.must([
        'sh',
        '-c',
        'echo "deb [signed-by=$1/repo-key.asc] file:$1/deb ./" > /etc/apt/sources.list.d/infisical-offline.list',
        'x',
        bundle,
      ]);
      const update = await box.exec([
        'apt-get',
        'update',
        '-o',
        'Dir::Etc::sourcelist=sources.list.d/infisical-offline.list',
        '-o',
        'Dir::Etc::sourceparts=-',
        '-o',
        'APT::Get::List-Cleanup=0',
      ]);
      assert.equal(update.code, 0, update.stdout + update.stderr);
      assert.doesNotMatch(update.stderr, /^[WE]:/m, 'apt warned about the local repository');
      const apt = await timed('apt-get install from the local repository: ca, proxy, gateway', () =>
        box.exec(['apt-get', 'install', '-y', 'infisical-ca', 'infisical-proxy', 'infisical-gateway'], { env }),
      );
      assert.equal(apt.code, 0, apt.stdout + apt.stderr);
      assert.match(apt.stdout, new RegExp(`file:${bundle}/deb \\./ infisical-gateway ${built.version}-1`));
      for (const p of PROGRAMS) {
        assert.match(await box.must(['dpkg', '-s', `infisical-${p}`]), /^Status: install ok installed$/m);
      }
    });

    it('install: users, private directories, config modes; nothing enabled or started', async () => {
      for (const d of DAEMONS) {
        await box.must(['getent', 'passwd', `infisical-${d}`]);
        assert.equal((await box.must(['stat', '-c', '%U %a', `/var/lib/infisical-${d}`])).trim(), `infisical-${d} 700`);
        assert.equal(
          (await box.must(['stat', '-c', '%U:%G %a', `/etc/infisical/${d}.conf`])).trim(),
          `root:infisical-${d} 640`,
        );
        assert.equal((await box.exec(['systemctl', 'is-enabled', units(d)])).stdout.trim(), 'disabled');
        assert.equal((await box.exec(['systemctl', 'is-active', units(d)])).stdout.trim(), 'inactive');
      }
    });

    it('installed units: verify prints nothing; security exposure ≤ 2.0 as systemd 252 rates them', async () => {
      const paths = DAEMONS.map((d) => `/lib/systemd/system/${units(d)}`);
      const verify = await box.exec(['systemd-analyze', 'verify', ...paths]);
      assert.equal(`${verify.stdout}${verify.stderr}`.trim(), '');
      const scores: Record<string, number> = {};
      for (const d of DAEMONS) {
        const out = (await box.exec(['systemd-analyze', 'security', '--no-pager', units(d)])).stdout;
        scores[d] = Number(/Overall exposure level for \S+: (\d+\.\d+)/.exec(out)?.[1]);
      }
      console.log(`# exposure (systemd 252, installed): ${JSON.stringify(scores)}`);
      for (const [d, score] of Object.entries(scores)) assert.ok(score <= 2.0, `${d}: ${score}`);
    });

    it('ca: init as the service user, start to READY under the sandbox, reload, journal', async () => {
      const start = await box.exec(['systemctl', 'start', units('ca')]);
      assert.notEqual(start.code, 0, 'an uninitialized CA must not start');
      // Today the missing sealing key is found before the missing init (exit 1, so systemd retries).
      assert.match(
        await box.must(['journalctl', '-u', units('ca'), '-o', 'cat', '--no-pager']),
        /E_SEALED_KEY|infisical-ca init/,
      );
      await box.must(['systemctl', 'stop', units('ca')]); // ends the retries

      const init = json<{ apiFingerprint: string }>(
        await box.must(['runuser', '-u', 'infisical-ca', '--', 'infisical-ca', 'init', '--json']),
      );
      fingerprint = init.apiFingerprint;
      await box.must(['systemctl', 'start', units('ca')]);
      const shown = await box.show(
        units('ca'),
        'ActiveState',
        'MainPID',
        'StatusText',
        'ExecMainStartTimestampMonotonic',
        'ActiveEnterTimestampMonotonic',
      );
      assert.equal(shown['ActiveState'], 'active');
      assert.match(shown['StatusText'] ?? '', /^serving on https:/);
      const readyMs =
        (Number(shown['ActiveEnterTimestampMonotonic']) - Number(shown['ExecMainStartTimestampMonotonic'])) / 1000;
      console.log(`# timing: infisical-ca exec to READY=1 under systemd ${readyMs.toFixed(0)} ms`);
      // Addons were unpacked into a private directory and removed at once: the cache holds nothing.
      assert.equal((await box.must(['ls', '-A', '/var/cache/infisical-ca'])).trim(), '');
      assert.equal((await box.must(['stat', '-c', '%a', '/var/cache/infisical-ca'])).trim(), '700');

      // Ops endpoint under ProcSubset=pid / ProtectProc=invisible: process metrics still read /proc/self.
      const metrics = await box.must([
        'bash',
        '-c',
        'exec 3<>/dev/tcp/127.0.0.1/9471 && printf "GET /metrics HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3',
      ]);
      assert.match(metrics, /^HTTP\/1\.1 200 OK/);
      assert.match(metrics, /^process_open_fds \d+/m);

      await box.must(['systemctl', 'reload', units('ca')]);
      const after = await box.show(units('ca'), 'ActiveState', 'MainPID', 'StatusText');
      assert.equal(after['MainPID'], shown['MainPID'], 'reload must not restart');
      assert.equal(after['ActiveState'], 'active');
      assert.match(after['StatusText'] ?? '', /reloaded/);
      const journal = await box.must(['journalctl', '-u', units('ca'), '-o', 'cat', '--no-pager']);
      assert.match(journal, /"msg":"serving"/);
      assert.match(journal, /"msg":"reloaded"/);
    });

    it('proxy and gateway: enroll, start (gateway READY = tunnel up), connect ping and a TCP stream', async () => {
      const ca = ['runuser', '-u', 'infisical-ca', '--', 'infisical-ca'];
      await box.must([...ca, 'org', 'create', 'acme', '--json']);
      const app = json<{ clientId: string; clientSecret: string }>(
        await box.must([...ca, 'identity', 'create', 'acme', 'app', '--json']),
      );
      const proxyToken = json<{ token: string }>(
        await box.must([...ca, 'token', '--kind', 'proxy', '--subject', 'p1', '--json']),
      ).token;
      const gatewayToken = json<{ token: string }>(
        await box.must([...ca, 'token', '--org', 'acme', '--kind', 'gateway', '--subject', 'gw1', '--json']),
      ).token;
      await box.must([
        ...ca,
        'policy',
        'add',
        'acme',
        '--subject',
        'identity:app',
        '--gateway',
        '*',
        '--target',
        'name:ping',
        '--target',
        '127.0.0.1:9471',
        '--target',
        '127.0.0.1:9500',
        '--mode',
        'ping',
        '--mode',
        'tcp',
      ]);
      const common = ['--ca', 'https://127.0.0.1:8443', '--ca-fingerprint', fingerprint];
      // The CA has 8443: the proxy's TLS port moves, in its config file as an operator would.
      await box.must([
        'sh',
        '-c',
        'printf "ssh_listen = 127.0.0.1:2222\\ntls_listen = 127.0.0.1:8444\\n" >> /etc/infisical/proxy.conf',
      ]);
      // Not enrolled yet: exit 78 (a configuration problem), which the unit does not restart.
      assert.notEqual((await box.exec(['systemctl', 'start', units('proxy')])).code, 0);
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const refused = await box.show(units('proxy'), 'ExecMainStatus', 'NRestarts', 'ActiveState');
      assert.deepEqual(
        [refused['ExecMainStatus'], refused['NRestarts'], refused['ActiveState']],
        ['78', '0', 'failed'],
      );
      await box.exec(['systemctl', 'reset-failed', units('proxy')]);
      // Tokens go in on standard input (docs/install.md), never on a command line other users can read.
      await box.must(
        [
          'runuser',
          '-u',
          'infisical-proxy',
          '--',
          'infisical-proxy',
          'enroll',
          ...common,
          '--token-file',
          '-',
          '--scope',
          'instance',
          '--proxy-id',
          'p1',
          '--hostname',
          '127.0.0.1',
          '--ssh-address',
          '127.0.0.1:2222',
          '--tls-address',
          '127.0.0.1:8444',
        ],
        { input: `${proxyToken}\n` },
      );
      await box.must(['systemctl', 'start', units('proxy')]);
      await box.must([
        'sh',
        '-c',
        'printf "allow_cidrs = 127.0.0.1/32\\nallow_ports = 9471, 9500\\n" >> /etc/infisical/gateway.conf',
      ]);
      await box.must(
        [
          'runuser',
          '-u',
          'infisical-gateway',
          '--',
          'infisical-gateway',
          'enroll',
          ...common,
          '--token-file',
          '-',
          '--org',
          'acme',
          '--gateway-id',
          'gw1',
        ],
        { input: `${gatewayToken}\n` },
      );
      await box.must(['systemctl', 'start', units('gateway')]);
      const gw = await box.show(units('gateway'), 'ActiveState', 'StatusText');
      assert.equal(gw['ActiveState'], 'active');
      assert.match(gw['StatusText'] ?? '', /tunnels up 1\/1/);

      await box.must(['sh', '-c', 'umask 077 && printf %s "$1" > /root/app.secret', 'x', app.clientSecret]);
      const client = [
        ...common,
        '--org',
        'acme',
        '--client-id',
        app.clientId,
        '--client-secret-file',
        '/root/app.secret',
      ];
      const ping = await box.exec([
        'infisical-connect',
        'ping',
        ...client,
        '--gateway',
        'gw1',
        '--count',
        '2',
        '--json',
      ]);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      assert.match(ping.stdout, /"event":"summary"[^\n]*"ok":1,"total":1/);

      // tcp: the CA's ops endpoint as the private target, fetched with bash's /dev/tcp through the forwarder.
      const fetched = await box.must([
        'bash',
        '-c',
        `
        infisical-connect tcp ${client.join(' ')} --gateway gw1 --target 127.0.0.1:9471 --listen 127.0.0.1:15000 --json >/root/fwd.log 2>&1 &
        fwd=$!
        for i in $(seq 50); do grep -q '"event":"listening"' /root/fwd.log && break; sleep 0.2; done
        exec 3<>/dev/tcp/127.0.0.1/15000
        printf 'GET /readyz HTTP/1.0\\r\\nHost: ops\\r\\n\\r\\n' >&3
        cat <&3
        kill $fwd`,
      ]);
      assert.match(fetched, /^HTTP\/1\.1 200 OK/);
      assert.match(fetched, /"status":"ready"/);

      // A 12 s transfer to an echo server behind the gateway, both relays reloaded by systemctl in the middle of
      // it: every byte must come back (counts and SHA-256 compared), and neither daemon may have restarted.
      await box.must(['systemd-run', '--unit=echo', '/usr/local/bin/infisical-test-probe', 'echo', '9500']);
      const pids = async () => [
        (await box.show(units('proxy'), 'MainPID'))['MainPID'],
        (await box.show(units('gateway'), 'MainPID'))['MainPID'],
      ];
      const before = await pids();
      const transfer = box.exec([
        'bash',
        '-c',
        `infisical-connect tcp ${client.join(' ')} --gateway gw1 --target 127.0.0.1:9500 --listen 127.0.0.1:15001 --json >/root/fwd2.log 2>&1 &
        fwd=$!
        for i in $(seq 50); do grep -qs '"event":"listening"' /root/fwd2.log && break; sleep 0.2; done
        /usr/local/bin/infisical-test-probe send 15001 12
        rc=$?
        kill $fwd
        exit $rc`,
      ]);
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      await box.must(['systemctl', 'reload', units('gateway')]);
      await box.must(['systemctl', 'reload', units('proxy')]);
      const sent = await transfer;
      assert.equal(sent.code, 0, sent.stdout + sent.stderr);
      assert.match(sent.stdout, /"ok":true/);
      assert.ok(Number(/"sentBytes":(\d+)/.exec(sent.stdout)?.[1]) > 16 << 20, sent.stdout);
      assert.deepEqual(await pids(), before, 'a reload restarted a daemon');
      for (const d of ['proxy', 'gateway']) {
        assert.match(await box.must(['journalctl', '-u', units(d), '-o', 'cat', '--no-pager']), /"msg":"reloaded"/);
      }
      await box.must(['systemctl', 'stop', 'echo.service']);
    });

    it('stop: STOPPING, drain, exit 0 for each daemon', async () => {
      for (const d of ['gateway', 'proxy', 'ca']) {
        await box.must(['systemctl', 'stop', units(d)]);
        const s = await box.show(units(d), 'ActiveState', 'Result', 'ExecMainStatus');
        assert.deepEqual([s['ActiveState'], s['Result'], s['ExecMainStatus']], ['inactive', 'success', '0'], d);
        assert.match(await box.must(['journalctl', '-u', units(d), '-o', 'cat', '--no-pager']), /"msg":"drained"/);
      }
    });

    it('watchdog: a stalled event loop is killed and restarted; a live one is not', async () => {
      await box.must([
        'systemd-run',
        '--unit=wd-probe',
        '-p',
        'Type=notify',
        '-p',
        'NotifyAccess=main',
        '-p',
        'WatchdogSec=2s',
        '-p',
        'TimeoutAbortSec=2s',
        '-p',
        'Restart=on-failure',
        '-p',
        'RestartSec=1',
        '-p',
        'CacheDirectory=wd-probe',
        '-p',
        'UnsetEnvironment=NODE_OPTIONS',
        '/usr/local/bin/infisical-test-probe',
        'watchdog',
      ]);
      // Three watchdog periods alive: the pings from the event loop keep it.
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      let s = await box.show('wd-probe.service', 'ActiveState', 'NRestarts', 'StatusText');
      assert.deepEqual([s['ActiveState'], s['NRestarts']], ['active', '0'], JSON.stringify(s));
      assert.match(s['StatusText'] ?? '', /watchdog ping every 1000 ms/);
      await box.must(['systemctl', 'kill', '--kill-who=main', '-s', 'SIGUSR2', 'wd-probe.service']);
      s = await box.until('the probe restarted', 30_000, async () => {
        const shown = await box.show('wd-probe.service', 'NRestarts', 'ActiveState');
        return shown['NRestarts'] !== '0' && shown['ActiveState'] === 'active' ? shown : undefined;
      });
      const journal = await box.must(['journalctl', '-u', 'wd-probe.service', '-o', 'cat', '--no-pager']);
      assert.match(journal, /Watchdog timeout \(limit 2s\)!/);
      await box.must(['systemctl', 'stop', 'wd-probe.service']);

      // The real CA unit, watchdog shortened by a drop-in: a stopped process (no pings) is restarted too.
      await box.must([
        'sh',
        '-c',
        'mkdir -p /run/systemd/system/infisical-ca.service.d && printf "[Service]\\nWatchdogSec=3s\\nTimeoutAbortSec=2s\\n" > /run/systemd/system/infisical-ca.service.d/wd.conf && systemctl daemon-reload',
      ]);
      await box.must(['systemctl', 'start', units('ca')]);
      const before = (await box.show(units('ca'), 'NRestarts'))['NRestarts'];
      await new Promise((resolve) => setTimeout(resolve, 7_000));
      assert.equal((await box.show(units('ca'), 'NRestarts'))['NRestarts'], before, 'restarted while healthy');
      await box.must(['systemctl', 'kill', '--kill-who=main', '-s', 'SIGSTOP', units('ca')]);
      await box.until('infisical-ca restarted by the watchdog', 30_000, async () => {
        const shown = await box.show(units('ca'), 'NRestarts', 'ActiveState');
        return shown['NRestarts'] !== before && shown['ActiveState'] === 'active' ? shown : undefined;
      });
      assert.match(
        await box.must(['journalctl', '-u', units('ca'), '-o', 'cat', '--no-pager']),
        /infisical-ca.service: Watchdog timeout \(limit 3s\)!/,
      );
      await box.must(['sh', '-c', 'rm -r /run/systemd/system/infisical-ca.service.d && systemctl daemon-reload']);
    });

    it('purge: daemons stopped, files, state and cache gone; system users kept', async () => {
      const names = PROGRAMS.map((p) => `infisical-${p}`);
      const purge = await box.exec(['apt-get', 'purge', '-y', ...names], {
        env: { DEBIAN_FRONTEND: 'noninteractive' },
      });
      assert.equal(purge.code, 0, purge.stdout + purge.stderr);
      assert.equal((await box.exec(['pgrep', '-f', '/usr/bin/infisical-'])).code, 1, 'a daemon survived its removal');
      for (const path of [
        '/usr/bin/infisical-ca',
        '/lib/systemd/system/infisical-ca.service',
        '/etc/infisical',
        '/var/lib/infisical-ca',
        '/var/cache/infisical-ca',
        '/var/lib/infisical-gateway',
      ]) {
        assert.equal((await box.exec(['test', '-e', path])).code, 1, `${path} left after purge`);
      }
      assert.equal((await box.exec(['dpkg', '-s', 'infisical-ca'])).code, 1);
      await box.must(['getent', 'passwd', 'infisical-ca']);
    });
  });
});
