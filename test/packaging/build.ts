/**
 * Builds what the packaging tests install: `scripts/package.sh` into a private output directory (xz level 1
 * for speed; the offline bundle signed with a development key), plus the test probe (watchdog, echo, send) as a standalone binary, and the cached Debian root.
 * Prints timings.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './container.js';

export const ROOT = join(import.meta.dirname, '../../..');

export interface Built {
  dist: string;
  version: string;
  debs: Record<string, string>;
  rpms: Record<string, string>;
  bundle: string;
  /** The release key's public half, beside the bundle (dist/release.pub), as an operator pins it. */
  releasePub: string;
  /** The bundle unpacked (into the output directory): its repositories and repo-key.asc. */
  unpacked: string;
  sea: (name: string) => string;
  remove(): void;
}

export const PROGRAMS = ['ca', 'proxy', 'gateway', 'connect'] as const;

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const value = await fn();
  console.log(`# timing: ${label} ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return value;
}

/**
 * Builds into a fresh temporary directory, removed afterwards. INFISICAL_PACKAGING_DIST=dir reuses the output of
 * an earlier `DIST=dir XZ_LEVEL=1 SEA_EXTRA=… scripts/package.sh` instead (kept), to iterate on the tests.
 */
export async function buildPackages(): Promise<Built> {
  const reuse = process.env['INFISICAL_PACKAGING_DIST'];
  const dist = reuse ?? mkdtempSync(join(tmpdir(), 'infisical-dist-'));
  const r = reuse
    ? { code: 0, stdout: '', stderr: '' }
    : await timed('make package (xz -1, with the test probe)', () =>
        run('scripts/package.sh', [], {
          cwd: ROOT,
          env: {
            ...process.env,
            DIST: dist,
            XZ_LEVEL: '1',
            SEA_EXTRA: 'test/packaging/fixtures/probe.ts=infisical-test-probe',
          },
        }),
      );
  if (r.code !== 0) throw new Error(`scripts/package.sh exited ${r.code}\n${r.stdout.slice(-4000)}\n${r.stderr}`);
  const files = readdirSync(dist);
  const version = /^infisical-offline-(.+)\.tar\.gz$/.exec(files.find((f) => f.endsWith('.tar.gz')) ?? '')?.[1];
  if (!version) throw new Error(`no offline bundle in ${dist}: ${files.join(' ')}`);
  const unpacked = join(dist, 'unpacked');
  const untar = await run('sh', [
    '-c',
    'rm -rf "$1" && mkdir "$1" && tar -C "$1" -xzf "$2"',
    'x',
    unpacked,
    join(dist, `infisical-offline-${version}.tar.gz`),
  ]);
  if (untar.code !== 0) throw new Error(`unpacking the offline bundle: ${untar.stderr}`);
  const pick = (suffix: (p: string) => string) =>
    Object.fromEntries(
      PROGRAMS.map((p) => {
        const file = files.find((f) => f === suffix(p));
        if (!file) throw new Error(`missing ${suffix(p)} in ${dist}`);
        return [p, join(dist, file)];
      }),
    );
  return {
    dist,
    version,
    debs: pick((p) => `infisical-${p}_${version}-1_amd64.deb`),
    rpms: pick((p) => `infisical-${p}-${version}-1.x86_64.rpm`),
    bundle: join(dist, `infisical-offline-${version}.tar.gz`),
    releasePub: join(dist, 'release.pub'),
    unpacked: join(unpacked, `infisical-offline-${version}`),
    sea: (name) => join(dist, 'sea', name),
    remove: () => {
      if (!reuse) rmSync(dist, { recursive: true, force: true });
    },
  };
}

export async function rootfs(): Promise<string> {
  const r = await timed('Debian 12 minbase root (cached after the first run)', () =>
    run(join(ROOT, 'test/packaging/make-rootfs.sh'), []),
  );
  if (r.code !== 0) throw new Error(`make-rootfs.sh exited ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

export { timed };
