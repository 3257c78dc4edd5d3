/**
 * The offline bundle's trust chain, fast and outside any container: scripts/offline-bundle.sh run on small
 * stand-in packages (the real ones take minutes; packages.test.ts installs those). The documented verify step
 * and install.sh accept the intact bundle and refuse, before anything is installed, one changed byte in a
 * package or in SHA256SUMS and a bundle signed by another key. install.sh runs with a PATH of stubs for
 * apt-get, dpkg, dnf and rpm that record what they were asked, so a wrong verdict installs nothing on this host.
 * The local repositories: apt (private state directories, simulated install) and dnf (into an empty root,
 * with a stand-in for RHEL's base packages) accept the signed metadata and refuse changed metadata.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PROGRAMS, ROOT } from './build.js';
import { run } from './container.js';

const VERSION = '0.0.1';
const BUNDLE = `infisical-offline-${VERSION}`;
/** The verify step exactly as INSTALL.md and docs/install.md write it, run in the unpacked bundle. */
const VERIFY = {
  fingerprint: 'openssl pkey -pubin -in release.pub -outform DER | sha256sum',
  signature: 'openssl pkeyutl -verify -pubin -inkey release.pub -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig',
  checksums: 'sha256sum --check --strict SHA256SUMS',
};

function which(tool: string): string | undefined {
  for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (existsSync(join(dir, tool))) return join(dir, tool);
  }
  return undefined;
}

const TOOLS = [
  ['openssl', 'openssl'],
  ['gpg', 'gnupg'],
  ['apt-ftparchive', 'apt-utils'],
  ['createrepo_c', 'createrepo-c'],
  ['rpmbuild', 'rpm'],
  ['dpkg-deb', 'dpkg'],
] as const;
const missing = TOOLS.find(([tool]) => !which(tool));
const root = process.getuid?.() === 0;

/** Stand-ins for the four packages: the names, versions and dependencies of the real ones, a tiny payload. */
function standInPackages(dir: string): string[] {
  const files: string[] = [];
  for (const p of PROGRAMS) {
    const name = `infisical-${p}`;
    const tree = join(dir, 'deb', name);
    mkdirSync(join(tree, 'DEBIAN'), { recursive: true });
    mkdirSync(join(tree, 'usr/bin'), { recursive: true });
    writeFileSync(join(tree, 'usr/bin', name), `#!/bin/sh\necho ${name} ${VERSION}\n`, { mode: 0o755 });
    writeFileSync(
      join(tree, 'DEBIAN/control'),
      `Package: ${name}\nVersion: ${VERSION}-1\nArchitecture: amd64\nMaintainer: tests <tests@invalid>\n` +
        `Depends: libc6 (>= 2.34)\nDescription: stand-in for ${name}\n stand-in\n`,
    );
    const deb = join(dir, `${name}_${VERSION}-1_amd64.deb`);
    execFileSync('dpkg-deb', ['--root-owner-group', '--build', tree, deb], { stdio: 'ignore' });
    files.push(deb);

    const top = join(dir, 'rpm', name);
    mkdirSync(join(top, 'SPECS'), { recursive: true });
    const requires = p === 'connect' ? 'glibc >= 2.34' : 'glibc >= 2.34, systemd-libs, shadow-utils, procps-ng';
    writeFileSync(
      join(top, 'SPECS', `${name}.spec`),
      `Name: ${name}\nVersion: ${VERSION}\nRelease: 1\nSummary: stand-in\nLicense: MIT\nBuildArch: x86_64\n` +
        `AutoReqProv: no\nRequires: ${requires}\n%description\nstand-in\n%install\n` +
        `mkdir -p %{buildroot}/usr/bin && printf '#!/bin/sh\\necho ${name}\\n' > %{buildroot}/usr/bin/${name}\n` +
        `%files\n%attr(0755,root,root) /usr/bin/${name}\n`,
    );
    rpmbuild(top, `${name}.spec`);
    files.push(join(top, 'RPMS', `${name}-${VERSION}-1.x86_64.rpm`));
  }
  return files;
}

function rpmbuild(top: string, spec: string): void {
  execFileSync(
    'rpmbuild',
    [
      '-bb',
      '--quiet',
      '--define',
      `_topdir ${top}`,
      '--define',
      '_rpmdir %{_topdir}/RPMS',
      '--define',
      '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm',
      '--define',
      'debug_package %{nil}',
      '--define',
      '__os_install_post %{nil}',
      join(top, 'SPECS', spec),
    ],
    { stdio: 'ignore' },
  );
}

interface Made {
  out: string;
  stdout: string;
  stderr: string;
}

async function makeBundle(out: string, packages: string[], env: NodeJS.ProcessEnv = {}): Promise<Made> {
  const r = await run(join(ROOT, 'scripts/offline-bundle.sh'), [VERSION, out, ...packages], {
    env: { ...process.env, RELEASE_KEY: '', ...env },
  });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return { out, stdout: r.stdout, stderr: r.stderr };
}

const fingerprintOf = (pub: string) =>
  execFileSync('sh', ['-c', 'openssl pkey -pubin -in "$1" -outform DER | sha256sum | cut -d" " -f1', 'x', pub], {
    encoding: 'utf8',
  }).trim();

describe('offline bundle: signed manifest, local repositories', {
  skip: missing ? `${missing[0]} missing (apt-get install ${missing[1]}; scripts/deps.sh installs it)` : false,
}, () => {
  let dir: string;
  let release: Made; // signed by RELEASE_KEY
  let other: Made; // the same packages, signed by another key
  let pinned: string; // the release key's public half, as the operator keeps it

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infisical-bundle-'));
    const packages = standInPackages(join(dir, 'pkg'));
    const key = join(dir, 'release.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', key]);
    release = await makeBundle(join(dir, 'release'), packages, { RELEASE_KEY: key });
    other = await makeBundle(join(dir, 'other'), packages); // no RELEASE_KEY: a development key
    pinned = join(dir, 'pinned.pub');
    execFileSync('openssl', ['pkey', '-in', key, '-pubout', '-out', pinned]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A fresh unpacked copy of a bundle, to change. */
  let copies = 0;
  function unpack(made: Made): string {
    const to = join(dir, `copy-${++copies}`);
    mkdirSync(to);
    execFileSync('tar', ['-C', to, '-xzf', join(made.out, `${BUNDLE}.tar.gz`)]);
    return join(to, BUNDLE);
  }

  function flipByte(file: string, at = 0.5): void {
    const bytes = readFileSync(file);
    const i = Math.floor(bytes.length * at);
    bytes[i] = bytes[i]! ^ 0x01;
    writeFileSync(file, bytes);
  }

  it('make: the release key signs without a warning, the public key and its fingerprint beside the bundle; no key → a loud development key', () => {
    const fp = fingerprintOf(pinned);
    assert.match(release.stdout, new RegExp(`release key fingerprint \\(sha256 of its DER form\\): ${fp}`));
    assert.equal(fingerprintOf(join(release.out, 'release.pub')), fp);
    assert.doesNotMatch(release.stderr, /DEVELOPMENT/);
    assert.ok(!existsSync(join(release.out, 'release-dev.key')));

    assert.match(other.stderr, /SIGNED WITH A DEVELOPMENT KEY/);
    assert.ok(existsSync(join(other.out, 'release-dev.key')));
    assert.notEqual(fingerprintOf(join(other.out, 'release.pub')), fp);
  });

  it('bundle: every file is in SHA256SUMS; debs and rpms in signed repositories; the rpms signed', async () => {
    const b = unpack(release);
    const listed = readFileSync(join(b, 'SHA256SUMS'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.slice(66));
    const all = execFileSync('find', ['.', '-type', 'f', '-printf', '%P\\n'], { cwd: b, encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter((f) => f !== 'SHA256SUMS' && f !== 'SHA256SUMS.sig');
    assert.deepEqual(listed.sort(), all.sort());
    for (const f of ['install.sh', 'INSTALL.md', 'release.pub', 'repo-key.asc', 'deb/InRelease', 'deb/Release.gpg']) {
      assert.ok(listed.includes(f), f);
    }
    assert.ok(listed.includes('rpm/repodata/repomd.xml') && listed.includes('rpm/repodata/repomd.xml.asc'));
    for (const p of PROGRAMS) {
      assert.ok(listed.includes(`deb/infisical-${p}_${VERSION}-1_amd64.deb`), p);
      assert.ok(listed.includes(`rpm/infisical-${p}-${VERSION}-1.x86_64.rpm`), p);
    }
    assert.match(readFileSync(join(b, 'INSTALL.md'), 'utf8'), new RegExp(`${BUNDLE}/`));
    const db = join(dir, 'rpmdb');
    mkdirSync(db);
    await run('rpm', ['--dbpath', db, '--import', join(b, 'repo-key.asc')]);
    for (const p of PROGRAMS) {
      const k = await run('rpm', ['--dbpath', db, '-K', join(b, `rpm/infisical-${p}-${VERSION}-1.x86_64.rpm`)]);
      assert.match(k.stdout, /digests signatures OK$/m, k.stdout + k.stderr);
    }
  });

  it('docs: INSTALL.md and docs/install.md give the verify step this test runs', () => {
    for (const doc of ['packaging/offline/INSTALL.md', 'docs/install.md']) {
      const text = readFileSync(join(ROOT, doc), 'utf8');
      for (const command of Object.values(VERIFY)) assert.ok(text.includes(command), `${doc}: ${command}`);
      assert.match(text, /--release-key /, doc);
      assert.match(text, /--release-fingerprint /, doc);
    }
  });

  describe('the verify step (stock openssl and sha256sum)', () => {
    const verify = (b: string) => ({
      fingerprint: () => run('sh', ['-c', VERIFY.fingerprint], { cwd: b }),
      signature: () => run('sh', ['-c', VERIFY.signature], { cwd: b }),
      checksums: () => run('sh', ['-c', VERIFY.checksums], { cwd: b }),
    });

    it('intact: the fingerprint is the release key’s, the signature verifies, every file matches', async () => {
      const v = verify(unpack(release));
      assert.equal((await v.fingerprint()).stdout.trim(), `${fingerprintOf(pinned)}  -`);
      const sig = await v.signature();
      assert.equal(sig.code, 0, sig.stderr);
      assert.match(sig.stdout, /Signature Verified Successfully/);
      const sums = await v.checksums();
      assert.equal(sums.code, 0, sums.stderr);
    });

    it('one byte changed in a .deb: the signature holds, the checksums refuse', async () => {
      const b = unpack(release);
      flipByte(join(b, `deb/infisical-gateway_${VERSION}-1_amd64.deb`));
      assert.equal((await verify(b).signature()).code, 0);
      const sums = await verify(b).checksums();
      assert.notEqual(sums.code, 0);
      assert.match(sums.stdout, /infisical-gateway_.*: FAILED$/m);
    });

    it('one byte changed in SHA256SUMS: the signature refuses', async () => {
      const b = unpack(release);
      flipByte(join(b, 'SHA256SUMS'), 0.1);
      const sig = await verify(b).signature();
      assert.notEqual(sig.code, 0);
      assert.match(sig.stdout + sig.stderr, /Signature Verification Failure/);
    });

    it('signed by another key: its release.pub has another fingerprint, and the pinned key refuses its signature', async () => {
      const b = unpack(other);
      assert.notEqual((await verify(b).fingerprint()).stdout.trim(), `${fingerprintOf(pinned)}  -`);
      const sig = await run('openssl', [
        'pkeyutl',
        '-verify',
        '-pubin',
        '-inkey',
        pinned,
        '-rawin',
        '-in',
        join(b, 'SHA256SUMS'),
        '-sigfile',
        join(b, 'SHA256SUMS.sig'),
      ]);
      assert.notEqual(sig.code, 0);
    });
  });

  describe('install.sh (package managers stubbed)', { skip: root ? false : 'install.sh installs as root only' }, () => {
    /** Runs install.sh with a PATH of the real tools it needs and stubs for the package managers. */
    async function install(b: string, args: string[], managers: 'deb' | 'rpm' = 'deb') {
      const bin = join(dir, `bin-${++copies}`);
      mkdirSync(bin);
      for (const tool of [
        'sh',
        'awk',
        'sha256sum',
        'openssl',
        'cut',
        'tr',
        'grep',
        'id',
        'dirname',
        'wc',
        'sed',
        'cat',
      ]) {
        symlinkSync(which(tool)!, join(bin, tool));
      }
      const log = join(bin, 'calls.log');
      for (const stub of managers === 'deb' ? ['apt-get', 'dpkg'] : ['dnf', 'rpm']) {
        writeFileSync(join(bin, stub), `#!/bin/sh\necho "${stub} $*" >> ${log}\n`, { mode: 0o755 });
      }
      const r = await run(join(b, 'install.sh'), args, { env: { PATH: bin } });
      const calls = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];
      return { ...r, calls };
    }
    const debs = (ps: readonly string[]) => ps.map((p) => `./deb/infisical-${p}_${VERSION}-1_amd64.deb`).join(' ');

    it('intact, pinned by key: apt-get installs the four listed debs', async () => {
      const r = await install(unpack(release), ['--release-key', pinned]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /bundle verified/);
      assert.deepEqual(r.calls, [`apt-get install -y --no-install-recommends ${debs(PROGRAMS)}`]);
    });

    it('intact, pinned by fingerprint, one program; an unlisted .deb beside it is never installed', async () => {
      const b = unpack(release);
      writeFileSync(join(b, 'deb/infisical-gateway_9.9.9-1_amd64.deb'), 'not listed');
      const r = await install(b, ['--release-fingerprint', fingerprintOf(pinned).toUpperCase(), 'gateway']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.calls, [`apt-get install -y --no-install-recommends ${debs(['gateway'])}`]);
    });

    it('RHEL-like host: dnf installs the listed rpms, with every repository disabled', async () => {
      const r = await install(unpack(release), ['--release-key', pinned, 'ca', 'connect'], 'rpm');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.calls, [
        `dnf install -y --disablerepo=* ./rpm/infisical-ca-${VERSION}-1.x86_64.rpm ./rpm/infisical-connect-${VERSION}-1.x86_64.rpm`,
      ]);
    });

    it('no pinned key: refuses, and prints the fingerprint to compare out of band', async () => {
      const r = await install(unpack(release), []);
      assert.equal(r.code, 2);
      assert.ok(r.stderr.includes(fingerprintOf(pinned)), r.stderr);
      assert.match(r.stderr, /no pinned release key; nothing installed/);
      assert.deepEqual(r.calls, []);
    });

    it('one byte changed in a .deb: refused, nothing installed', async () => {
      const b = unpack(release);
      flipByte(join(b, `deb/infisical-ca_${VERSION}-1_amd64.deb`));
      const r = await install(b, ['--release-key', pinned]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /SHA256SUMS check failed; nothing installed/);
      assert.deepEqual(r.calls, []);
    });

    it('one byte changed in SHA256SUMS: refused, nothing installed', async () => {
      const b = unpack(release);
      flipByte(join(b, 'SHA256SUMS'), 0.9);
      const r = await install(b, ['--release-key', pinned]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /SHA256SUMS is not signed by the pinned release key/);
      assert.deepEqual(r.calls, []);
    });

    it('signed by another key (its own release.pub inside): refused by key and by fingerprint', async () => {
      const byKey = await install(unpack(other), ['--release-key', pinned]);
      assert.equal(byKey.code, 1);
      assert.match(byKey.stderr, /not signed by the pinned release key/);
      const byFingerprint = await install(unpack(other), ['--release-fingerprint', fingerprintOf(pinned)]);
      assert.equal(byFingerprint.code, 1);
      assert.match(byFingerprint.stderr, /release\.pub has the fingerprint [0-9a-f]{64}, not the pinned/);
      assert.deepEqual([...byKey.calls, ...byFingerprint.calls], []);
    });

    it('a changed package with a consistent manifest re-signed by another key, its key inside: the pin refuses it', async () => {
      const b = unpack(release);
      flipByte(join(b, `deb/infisical-gateway_${VERSION}-1_amd64.deb`));
      writeFileSync(join(b, 'release.pub'), readFileSync(join(other.out, 'release.pub')));
      // What an attacker without the release key can do: every checksum right, a valid signature by their key.
      execFileSync(
        'sh',
        [
          '-c',
          "awk '{print $2}' SHA256SUMS | xargs sha256sum > SHA256SUMS.new && mv SHA256SUMS.new SHA256SUMS && " +
            'openssl pkeyutl -sign -inkey "$1" -rawin -in SHA256SUMS -out SHA256SUMS.sig',
          'x',
          join(other.out, 'release-dev.key'),
        ],
        { cwd: b },
      );
      assert.equal((await run('sh', ['-c', `${VERIFY.signature} && ${VERIFY.checksums}`], { cwd: b })).code, 0);
      const byKey = await install(b, ['--release-key', pinned]);
      assert.equal(byKey.code, 1);
      assert.match(byKey.stderr, /not signed by the pinned release key/);
      const byFingerprint = await install(b, ['--release-fingerprint', fingerprintOf(pinned)]);
      assert.equal(byFingerprint.code, 1);
      assert.deepEqual([...byKey.calls, ...byFingerprint.calls], []);
    });
  });

  describe('apt: the flat repository (private apt state, simulated install)', () => {
    async function apt(b: string, key: string) {
      const state = mkdtempSync(join(dir, 'apt-'));
      mkdirSync(join(state, 'lists/partial'), { recursive: true });
      mkdirSync(join(state, 'cache/archives/partial'), { recursive: true });
      writeFileSync(join(state, 'sources.list'), `deb [signed-by=${key}] file:${b}/deb ./\n`);
      const options = [
        `Dir::State::Lists=${state}/lists`,
        `Dir::Cache=${state}/cache`,
        `Dir::Etc::sourcelist=${state}/sources.list`,
        'Dir::Etc::sourceparts=-',
        'APT::Get::List-Cleanup=0',
        // The bundle sits in a private temporary directory the _apt user cannot read (INSTALL.md: /opt).
        'APT::Sandbox::User=root',
      ].flatMap((o) => ['-o', o]);
      const update = await run('apt-get', [...options, 'update']);
      const simulate = await run('apt-get', [...options, '-s', 'install', 'infisical-gateway']);
      return { update, simulate };
    }

    it('signed Release: update, then install resolves infisical-gateway from it', async () => {
      const b = unpack(release);
      const { update, simulate } = await apt(b, join(b, 'repo-key.asc'));
      assert.equal(update.code, 0, update.stdout + update.stderr);
      assert.doesNotMatch(update.stderr, /^[WE]:/m);
      assert.match(simulate.stdout, /^Inst infisical-gateway \(0\.0\.1-1 Infisical offline:offline \[amd64\]\)/m);
    });

    it('changed Packages, or a Release signed by another key: apt refuses the repository', async () => {
      const changed = unpack(release);
      appendFileSync(join(changed, 'deb/Packages'), '\n');
      rmSync(join(changed, 'deb/Packages.gz'));
      const a = await apt(changed, join(changed, 'repo-key.asc'));
      assert.notEqual(a.simulate.code, 0, a.update.stdout + a.update.stderr);
      const b = unpack(release);
      const foreign = await apt(b, join(unpack(other), 'repo-key.asc'));
      assert.notEqual(foreign.update.code, 0);
      assert.match(foreign.update.stderr, /NO_PUBKEY|not signed/);
      assert.notEqual(foreign.simulate.code, 0);
    });
  });

  describe('dnf: the rpm repository (into an empty root, no scriptlets)', {
    skip: !which('dnf') ? 'dnf missing (apt-get install dnf)' : root ? false : 'dnf --installroot needs root',
  }, () => {
    let base: string;
    before(() => {
      // RHEL 9's base packages, as one stand-in rpm in an unsigned repository of its own.
      const top = join(dir, 'base');
      mkdirSync(join(top, 'SPECS'), { recursive: true });
      writeFileSync(
        join(top, 'SPECS/base.spec'),
        'Name: rhel-base-standin\nVersion: 9\nRelease: 1\nSummary: stand-in\nLicense: MIT\nBuildArch: noarch\n' +
          'Provides: glibc = 2.34, systemd-libs, shadow-utils, procps-ng\n%description\nstand-in\n%files\n',
      );
      rpmbuild(top, 'base.spec');
      base = join(top, 'RPMS');
      execFileSync('createrepo_c', ['--quiet', '--no-database', base]);
    });

    async function dnf(b: string) {
      const installroot = mkdtempSync(join(dir, 'dnfroot-'));
      const r = await run('dnf', [
        '-y',
        `--installroot=${installroot}`,
        '--releasever=9',
        '--setopt=reposdir=/dev/null',
        `--setopt=cachedir=${installroot}-cache`,
        '--setopt=tsflags=noscripts',
        '--setopt=skip_if_unavailable=False',
        `--repofrompath=infisical,file://${b}/rpm`,
        '--setopt=infisical.gpgcheck=1',
        '--setopt=infisical.repo_gpgcheck=1',
        `--setopt=infisical.gpgkey=file://${b}/repo-key.asc`,
        `--repofrompath=base,file://${base}`,
        '--setopt=base.gpgcheck=0',
        'install',
        'infisical-gateway',
      ]);
      return { ...r, installroot };
    }

    it('signed metadata and rpms: dnf install infisical-gateway pulls its dependencies from the base', async () => {
      const r = await dnf(unpack(release));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const installed = await run('rpm', ['--root', r.installroot, '-qa', '--qf', '%{NAME}\\n']);
      assert.deepEqual(installed.stdout.trim().split('\n').sort(), [
        'gpg-pubkey',
        'infisical-gateway',
        'rhel-base-standin',
      ]);
      assert.ok(readdirSync(join(r.installroot, 'usr/bin')).includes('infisical-gateway'));
    });

    it('changed repomd.xml: dnf refuses the repository (Bad GPG signature)', async () => {
      const b = unpack(release);
      const repomd = join(b, 'rpm/repodata/repomd.xml');
      writeFileSync(repomd, readFileSync(repomd, 'utf8').replace('<revision>', '<revision>1'));
      const r = await dnf(b);
      assert.notEqual(r.code, 0);
      assert.match(r.stdout + r.stderr, /repomd\.xml GPG signature verification error/);
      assert.ok(!existsSync(join(r.installroot, 'usr/bin/infisical-gateway')));
    });
  });
});
