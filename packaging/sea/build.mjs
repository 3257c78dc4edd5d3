// Builds one single executable (Node SEA) per entry: esbuild bundle (ESM sources → one CJS file, as SEA on
// Node 24 runs CommonJS only) → SEA blob made by the Node 24 binary itself → a stripped copy of that binary
// with the blob injected by postject. Native addons are SEA assets loaded by packaging/sea/addons.cjs.
//
// Usage: node build.mjs --node NODE24 --addons DIR --out DIR --version V ENTRY=NAME...
//   e.g. daemons/ca.ts=infisical-ca
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const tools = createRequire(join(root, 'packaging/.tools/node_modules/'));
const project = createRequire(join(root, 'node_modules/'));
const esbuild = tools('esbuild');
const { inject } = tools('postject');
const ts = project('typescript');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    node: { type: 'string' },
    addons: { type: 'string' },
    out: { type: 'string' },
    version: { type: 'string' },
  },
});
for (const key of ['node', 'addons', 'out', 'version']) {
  if (!values[key]) throw new Error(`build.mjs: --${key} is required`);
}
const addonDir = resolve(values.addons);
const outDir = resolve(values.out);
const work = join(outDir, '.work');
mkdirSync(work, { recursive: true });

// Addon name (as loadAddon knows it) → built .node file. Every .node the bundle asks for must be here.
const ADDONS = {
  better_sqlite3: join(addonDir, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'),
  notify: join(addonDir, 'node_modules/sd-notify/build/Release/notify.node'),
  sshcrypto: join(addonDir, 'node_modules/ssh2-crypto/build/Release/sshcrypto.node'),
  cpufeatures: join(addonDir, 'node_modules/cpu-features/build/Release/cpufeatures.node'),
  // libpq's binding, for the CA's PostgreSQL store (it asks `bindings` for "addon"); it links the system's libpq.so.5.
  addon: join(addonDir, 'node_modules/libpq/build/Release/addon.node'),
};
// This script runs on the Node the binaries embed (scripts/build-sea.sh): each addon must load here, or a wrong
// ABI or wrong headers (a cached build from before a fix included) would fail only when a unit starts.
for (const [name, file] of Object.entries(ADDONS)) {
  if (!existsSync(file)) throw new Error(`addon ${name}: ${file} missing (run scripts/build-sea.sh)`);
  try {
    process.dlopen({ exports: {} }, file);
  } catch (err) {
    throw new Error(`addon ${name}: ${file} does not load in Node ${process.version}: ${err.message}`);
  }
}
const loaderPath = join(root, 'packaging/sea/addons.cjs');

/**
 * Top-level await cannot be emitted as CommonJS. The daemons end with one `await yargs…parseAsync();`
 * statement: rewrite exactly that shape to a call whose rejection exits 1 (what a rejected top-level await
 * does), and refuse any other top-level await rather than guess.
 */
function rewriteTopLevelAwait(file, text) {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const edits = [];
  const findAwait = (node) => {
    if (ts.isFunctionLike(node)) return undefined;
    if (ts.isAwaitExpression(node) || (ts.isForOfStatement(node) && node.awaitModifier)) return node;
    return ts.forEachChild(node, findAwait);
  };
  for (const statement of sf.statements) {
    if (ts.isExpressionStatement(statement) && ts.isAwaitExpression(statement.expression)) {
      const inner = statement.expression.expression.getText(sf);
      edits.push([statement.getStart(sf), statement.end, `__seaTopLevel(${inner});`]);
      continue;
    }
    const found = findAwait(statement);
    if (found) {
      const { line } = sf.getLineAndCharacterOfPosition(found.getStart(sf));
      throw new Error(`${file}:${line + 1}: top-level await in a form the SEA bundle cannot rewrite`);
    }
  }
  let out = text;
  for (const [start, end, replacement] of edits.reverse()) out = out.slice(0, start) + replacement + out.slice(end);
  return out;
}

const seaPlugin = {
  name: 'sea-addons',
  setup(build) {
    // `bindings` (better-sqlite3, sd-notify) finds addons by walking the file system from a stack trace.
    build.onResolve({ filter: /^bindings$/ }, () => ({ path: 'bindings', namespace: 'sea-addon' }));
    // Direct requires of a .node file (ssh2's sshcrypto, cpu-features).
    build.onResolve({ filter: /\.node$/ }, (args) => ({
      path: basename(args.path, '.node'),
      namespace: 'sea-addon',
    }));
    build.onLoad({ filter: /.*/, namespace: 'sea-addon' }, (args) => {
      const loader = JSON.stringify(loaderPath);
      if (args.path === 'bindings') {
        return {
          contents: `const { loadAddon } = require(${loader});
module.exports = (opts) => loadAddon(String(typeof opts === 'string' ? opts : opts.bindings).replace(/\\.node$/, ''));`,
          resolveDir: root,
          loader: 'js',
        };
      }
      if (!(args.path in ADDONS)) return { errors: [{ text: `native addon ${args.path}.node is not packaged` }] };
      return {
        contents: `module.exports = require(${loader}).loadAddon(${JSON.stringify(args.path)});`,
        resolveDir: root,
        loader: 'js',
      };
    });
    // Project sources: `createRequire(import.meta.url)(x)` hides x from the bundler; make it a plain require.
    build.onLoad({ filter: /\/(lib|daemons)\/.*\.ts$/ }, (args) => {
      let text = readFileSync(args.path, 'utf8').replaceAll('createRequire(import.meta.url)(', 'require(');
      if (args.path.includes('/daemons/')) text = rewriteTopLevelAwait(args.path, text);
      if (text.includes('import.meta')) {
        return { errors: [{ text: `${args.path}: import.meta has no meaning in the SEA bundle` }] };
      }
      return { contents: text, loader: 'ts' };
    });
  },
};

const seaNode = join(work, 'node-stripped');
copyFileSync(values.node, seaNode);
chmodSync(seaNode, 0o755);
// Strip before injecting: stripping afterwards drops the injected section's notes and breaks the binary.
execFileSync('strip', ['--strip-all', seaNode]);

for (const spec of positionals) {
  const [entry, name] = spec.split('=');
  if (!entry || !name) throw new Error(`bad entry "${spec}" (expected path=name)`);
  const started = Date.now();
  const bundle = join(work, `${name}.cjs`);
  const result = await esbuild.build({
    entryPoints: [join(root, entry)],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    minifyWhitespace: true,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    banner: {
      js: `"use strict";function __seaTopLevel(p){Promise.resolve(p).catch((e)=>{console.error(e);process.exit(1)})}`,
    },
    plugins: [seaPlugin],
  });
  writeFileSync(join(work, `${name}.meta.json`), JSON.stringify(result.metafile));
  const assets = Object.fromEntries(Object.entries(ADDONS).map(([addon, file]) => [`${addon}.node`, file]));
  const blob = join(work, `${name}.blob`);
  const config = join(work, `${name}.sea.json`);
  writeFileSync(
    config,
    JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, assets }),
  );
  execFileSync(values.node, ['--experimental-sea-config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  const out = join(outDir, name);
  copyFileSync(seaNode, out);
  await inject(out, 'NODE_SEA_BLOB', readFileSync(blob), {
    sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
  });
  chmodSync(out, 0o755);
  process.stdout.write(`  ${name}: ${Date.now() - started} ms (version ${values.version})\n`);
}
