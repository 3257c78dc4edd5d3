/**
 * lib/ca/config.ts: the `store` key (file, --store, INFISICAL_CA_STORE) may be a postgres:// URL holding its
 * password, so it is a secret: never echoed by a refusal, the effective-config description or the sample config.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { caConfigSchema } from '../../lib/ca/config.js';
import { ConfigError, describeConfig, loadConfig } from '../../lib/runtime/config.js';
import { renderSampleConfig } from '../../lib/runtime/config-doc.js';

const PATH = '/etc/infisical/ca.conf';
const files = (text: string | undefined) => (p: string) => (p === PATH ? text : undefined);
const GOOD = 'postgres://infisical-ca:s3cret-pw@db.internal/infisical_ca';
const BAD = 'postgres://infisical-ca:s3cret-pw@db.internal:notaport/infisical_ca';

test('the store URL is a secret: refusals and the effective config never show its password', () => {
  const sources = [
    { flags: { store: BAD }, readFile: files(undefined) },
    { env: { INFISICAL_CA_STORE: BAD }, readFile: files(undefined) },
    { readFile: files(`store = ${BAD}\n`) },
  ];
  for (const source of sources) {
    let refused: unknown;
    try {
      loadConfig(caConfigSchema, source);
    } catch (err) {
      refused = err;
    }
    assert.ok(refused instanceof ConfigError, 'an unparsable URL is refused');
    assert.match(refused.problems.join('\n'), /key "store"/);
    assert.doesNotMatch(`${refused.message}\n${refused.problems.join('\n')}`, /s3cret/);
  }
  for (const source of [
    { flags: { store: GOOD }, readFile: files(undefined) },
    { env: { INFISICAL_CA_STORE: GOOD }, readFile: files(undefined) },
    { readFile: files(`store = ${GOOD}\n`) },
  ]) {
    const loaded = loadConfig(caConfigSchema, source);
    assert.equal(loaded.config.store, GOOD, 'the daemon itself gets the URL');
    const described = describeConfig(caConfigSchema, loaded);
    assert.equal(described['store']?.value, '<redacted>');
    assert.doesNotMatch(JSON.stringify(described), /s3cret/);
  }
  assert.match(renderSampleConfig(caConfigSchema), /Where the CA keeps its records[\s\S]*?# Secret:[\s\S]*?#store = /);
});
