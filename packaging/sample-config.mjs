// Prints the documented sample config of one daemon, rendered from the daemon's own config schema (the same
// declaration the loader enforces), so the packaged /etc/infisical/<daemon>.conf cannot drift from the code.
// Usage: node packaging/sample-config.mjs ca|proxy|gateway
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const esbuild = createRequire(join(root, 'packaging/.tools/node_modules/'))('esbuild');
const SCHEMAS = { ca: 'caConfigSchema', proxy: 'proxyConfigSchema', gateway: 'gatewayConfigSchema' };
const daemon = process.argv[2];
if (!daemon || !(daemon in SCHEMAS)) throw new Error(`usage: sample-config.mjs ${Object.keys(SCHEMAS).join('|')}`);

const entry = `import { ${SCHEMAS[daemon]} as schema } from './lib/${daemon}/config.ts';
import { renderSampleConfig } from './lib/runtime/config-doc.ts';
process.stdout.write(renderSampleConfig(schema));`;
const result = await esbuild.build({
  stdin: { contents: entry, resolveDir: root, loader: 'ts', sourcefile: 'sample-config-entry.ts' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  write: false,
  packages: 'external',
  logLevel: 'error',
});
const code = result.outputFiles[0].text;
await import(`data:text/javascript;base64,${Buffer.from(code).toString('base64')}`);
