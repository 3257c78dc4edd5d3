#!/usr/bin/env node
/**
 * infisical-proxy: holds gateways' SSH reverse tunnels and relays platforms' mTLS streams into them, blind to
 * what they carry. This file only wires: commands → lib/proxy.
 * Configuration: flags > environment (INFISICAL_PROXY_*) > /etc/infisical/proxy.conf > defaults
 * (lib/proxy/config.ts).
 */
// First: V8 settings for moving bytes (lib/runtime/v8-flags.ts), before anything allocates.
import '../lib/runtime/v8-flags.js';
import type { ArgumentsCamelCase, Argv } from 'yargs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { enrolledCommands } from '../lib/enrolled/commands.js';
import { tokenOnCommandLineWarning } from '../lib/enrolled/credentials.js';
import { GatewayError } from '../lib/errors/codes.js';
import { proxyConfigSchema } from '../lib/proxy/config.js';
import {
  enrollCommand,
  PROXY_VERSION,
  type ProxyConfig,
  renewCommand,
  serve,
  statusCommand,
} from '../lib/proxy/serve.js';
import { loadFromArgv } from '../lib/runtime/config.js';
import { flagOptions } from '../lib/runtime/config-doc.js';
import { daemonExitStatus } from '../lib/runtime/exit-status.js';
import { createLogger } from '../lib/runtime/log.js';
import type { LogLevel } from '../lib/runtime/runtime-keys.js';

type Args = ArgumentsCamelCase<Record<string, unknown>>;

/** Flags (those the schema declares) > environment > config file > defaults. */
function configOf(argv: Args): ProxyConfig {
  return loadFromArgv(proxyConfigSchema, argv).config;
}

function fail(err: unknown, json: boolean): void {
  const code = err instanceof GatewayError ? err.code : 'E_INTERNAL';
  const message = (err as Error).message;
  if (json) process.stdout.write(`${JSON.stringify({ code, message })}\n`);
  else process.stderr.write(`infisical-proxy: ${code}: ${message}\n`);
  process.exitCode = daemonExitStatus(code);
}

function globalOptions(y: Argv): Argv {
  return y
    .option('config', { type: 'string', describe: 'config file (default /etc/infisical/proxy.conf)', global: true })
    .option('state-dir', {
      type: 'string',
      describe: 'state directory (default $STATE_DIRECTORY or /var/lib/infisical-proxy)',
      global: true,
    })
    .option('log-level', { type: 'string', describe: 'fatal|error|warn|info|debug|trace', global: true })
    .option('json', { type: 'boolean', describe: 'print results as JSON', global: true })
    .option('ssh-listen', {
      type: 'string',
      describe: 'SSH listen host:port for gateways (default 0.0.0.0:2222)',
      global: true,
    })
    .option('tls-listen', {
      type: 'string',
      describe: 'TLS listen host:port for platforms (default 0.0.0.0:8443)',
      global: true,
    });
}

await globalOptions(yargs(hideBin(process.argv)))
  .scriptName('infisical-proxy')
  .usage('$0 <command> [options]\n\nProxy of the gateway suite: SSH reverse tunnels in, mTLS streams relayed blind.')
  .command(
    'enroll',
    'enroll with the CA (keys are made here; certificates and trust lists go to the state database)',
    (y) =>
      y
        .option('ca', { type: 'string', describe: 'CA API URL (https://host:port)' })
        .option('ca-fingerprint', { type: 'string', describe: 'sha256:… of the CA API certificate (pinned)' })
        .option('token-file', {
          type: 'string',
          nargs: 1, // "-" is its value (standard input), not a positional
          describe: 'file holding the one-time enrollment token (kind proxy), chmod 600; - reads standard input',
        })
        .option('token', {
          type: 'string',
          describe: 'the token itself: visible to every user in ps (warns); prefer --token-file or the environment',
        })
        .option('admin-client-id', { type: 'string', describe: 'admin (instance) or org-admin (org) client id' })
        .option('client-secret-file', { type: 'string', describe: 'file holding the client secret (chmod 600)' })
        .option('scope', {
          choices: ['instance', 'org'] as const,
          describe: 'instance (shared) or org (one org) proxy',
        })
        .option('org', { type: 'string', describe: 'org id (org proxy)' })
        .option('proxy-id', { type: 'string', describe: 'this proxy id' })
        .option('hostname', { type: 'array', string: true, describe: 'name or address clients dial (repeatable)' })
        .option('ssh-address', { type: 'string', describe: 'SSH host:port advertised to gateways' })
        .option('tls-address', { type: 'string', describe: 'TLS host:port advertised to platforms' }),
    async (argv) => {
      try {
        const loaded = loadFromArgv(proxyConfigSchema, argv);
        const warning = tokenOnCommandLineWarning(proxyConfigSchema, loaded.origins.enrollment_token);
        if (warning) process.stderr.write(`infisical-proxy: ${warning}\n`);
        const out = await enrollCommand(loaded.config);
        process.stdout.write(
          argv['json']
            ? `${JSON.stringify(out, null, 2)}\n`
            : `enrolled ${String(out['proxyUri'])}\n  database ${String(out['database'])}\n  ssh ${String(out['ssh'])}\n  tls ${String(out['tls'])}\n`,
        );
      } catch (err) {
        fail(err, Boolean(argv['json']));
      }
    },
  )
  .command(enrolledCommands({ configOf, renew: renewCommand, status: statusCommand, fail }))
  .command(
    'serve',
    'hold tunnels and relay streams from the state database (READY=1, SIGHUP reload, SIGTERM drain)',
    (y) =>
      y
        .option('ops-listen', { type: 'string', describe: 'ops endpoint host:port (default 127.0.0.1:9473)' })
        .option('handshake-timeout', { type: 'string', describe: 'SSH login / TLS handshake bound (default 10s)' })
        .option('idle-timeout', { type: 'string', describe: 'idle stream bound (default 15m)' })
        .option('revocation-poll', { type: 'string', describe: 'revocation feed period, 0 = off (default 10s)' })
        .option('drain-timeout', { type: 'string', describe: 'SIGTERM drain bound (default 30s)' })
        .options(
          flagOptions(proxyConfigSchema, [
            'ops_allow_remote',
            'max_connections',
            'max_streams_per_gateway',
            'max_auth_attempts',
            'max_unauthenticated_per_source',
            'forward_timeout',
            'max_tunnels_per_org',
            'max_streams_per_org',
            'cert_skew',
            'feed_wait',
            'feed_stale_after',
          ]),
        ),
    async (argv) => {
      try {
        const config = configOf(argv);
        const logger = createLogger({ daemon: 'proxy', version: PROXY_VERSION, level: config.log_level as LogLevel });
        await serve(config, logger, () => configOf(argv));
      } catch (err) {
        fail(err, Boolean(argv['json']));
        process.exit();
      }
    },
  )
  .demandCommand(1, 'name a command (see --help)')
  .strict()
  .version(PROXY_VERSION)
  .help()
  .wrap(Math.min(120, process.stdout.columns || 120))
  .parseAsync();
