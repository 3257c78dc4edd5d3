'use strict';
/**
 * Native addons inside a single executable (Node SEA). The .node files ride in the SEA blob as assets; each is
 * written into a fresh private directory (mkdtemp: random name, mode 0700), loaded with process.dlopen and
 * unlinked at once (the mapping stays), so nothing is left behind and no other user can swap the file in
 * between. The directory is made under the first base that allows it: $CACHE_DIRECTORY (systemd's
 * CacheDirectory=, writable and exec-allowed under ProtectSystem=strict), $XDG_RUNTIME_DIR, then os.tmpdir()
 * (a noexec /tmp fails dlopen, so the next base is tried).
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const loaded = new Map();

function bases() {
  const out = [];
  for (const name of ['CACHE_DIRECTORY', 'XDG_RUNTIME_DIR']) {
    for (const dir of (process.env[name] || '').split(':')) if (path.isAbsolute(dir)) out.push(dir);
  }
  out.push(os.tmpdir());
  return out;
}

function loadAddon(name) {
  const cached = loaded.get(name);
  if (cached) return cached;
  const sea = require('node:sea');
  if (!sea.isSea()) throw new Error(`native addon ${name}: not running as a single executable`);
  const bytes = new Uint8Array(sea.getRawAsset(`${name}.node`));
  const failures = [];
  for (const base of bases()) {
    let dir;
    try {
      dir = fs.mkdtempSync(path.join(base, '.infisical-addon-'));
      const file = path.join(dir, `${name}.node`);
      fs.writeFileSync(file, bytes, { mode: 0o500, flag: 'wx' });
      const mod = { exports: {} };
      process.dlopen(mod, file, os.constants.dlopen.RTLD_NOW);
      loaded.set(name, mod.exports);
      return mod.exports;
    } catch (err) {
      failures.push(`${base}: ${err?.message ?? err}`);
    } finally {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  throw new Error(`cannot load native addon ${name}:\n  ${failures.join('\n  ')}`);
}

module.exports = { loadAddon };
