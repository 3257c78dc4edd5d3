#!/usr/bin/env node
/**
 * infisical-gateway: runs inside the private network, keeps SSH reverse tunnels to the proxies and serves
 * end-to-end mTLS streams to private targets. This file only wires: commands → lib/gateway.
 * Configuration: flags > environment (INFISICAL_GATEWAY_*) > /etc/infisical/gateway.conf > defaults
 * (lib/gateway/config.ts).
 */
// First: V8 settings for moving bytes (lib/runtime/v8-flags.ts), before anything allocates.
import '../lib/runtime/v8-flags.js';
import type { ArgumentsCamelCase, Argv } from 'yargs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { enrolledCommands } from '../lib/enrolled/commands.js';
import { tokenOnCommandLineWarning } from '../lib/enrolled/credentials.js';
import { GatewayError } from '../lib/errors/codes.js';
import { gatewayConfigSchema } from '../lib/gateway/config.js';
import {
  enrollCommand,
  GATEWAY_VERSION,
  type GatewayConfig,
  renewCommand,
  serve,
  statusCommand,
} from '../lib/gateway/serve.js';
import { loadFromArgv } from '../lib/runtime/config.js';
import { flagOptions } from '../lib/runtime/config-doc.js';
import { daemonExitStatus } from '../lib/runtime/exit-status.js';
import { createLogger } from '../lib/runtime/log.js';
import type { LogLevel } from '../lib/runtime/runtime-keys.js';

type Args = ArgumentsCamelCase<Record<string, unknown>>;

/** Flags (those the schema declares) > environment > config file > defaults. */
function configOf(argv: Args): GatewayConfig {
  return loadFromArgv(gatewayConfigSchema, argv).config;
}

function fail(err: unknown, json: boolean): void {
  const code = err instanceof GatewayError ? err.code : 'E_INTERNAL';
  const message = (err as Error).message;
  if (json) process.stdout.write(`${JSON.stringify({ code, message })}\n`);
  else process.stderr.write(`infisical-gateway: ${code}: ${message}\n`);
  process.exitCode = daemonExitStatus(code);
}

function globalOptions(y: Argv): Argv {
  return y
    .option('config', { type: 'string', describe: 'config file (default /etc/infisical/gateway.conf)', global: true })
    .option('state-dir', {
      type: 'string',
      describe: 'state directory (default $STATE_DIRECTORY or /var/lib/infisical-gateway)',
      global: true,
    })
    .option('log-level', { type: 'string', describe: 'fatal|error|warn|info|debug|trace', global: true })
    .option('json', { type: 'boolean', describe: 'print results as JSON', global: true });
}

await globalOptions(yargs(hideBin(process.argv)))
  .scriptName('infisical-gateway')
  .usage(
    '$0 <command> [options]\n\n' +
      'Gateway of the suite: SSH reverse tunnels to proxies, end-to-end mTLS to private targets.',
  )
  .command(
    'enroll',
    'enroll with the CA (keys are made here; certificates, trust anchors and proxies go to the state database)',
    (y) =>
      y
        .option('ca', { type: 'string', describe: 'CA API URL (https://host:port)' })
        .option('ca-fingerprint', { type: 'string', describe: 'sha256:… of the CA API certificate (pinned)' })
        .option('token-file', {
          type: 'string',
          nargs: 1, // "-" is its value (standard input), not a positional
          describe: 'file holding the one-time enrollment token (kind gateway), chmod 600; - reads standard input',
        })
        .option('token', {
          type: 'string',
          describe: 'the token itself: visible to every user in ps (warns); prefer --token-file or the environment',
        })
        .option('client-id', { type: 'string', describe: 'machine identity client id (org-admin)' })
        .option('client-secret-file', { type: 'string', describe: 'file holding the client secret (chmod 600)' })
        .option('org', { type: 'string', describe: 'org id' })
        .option('gateway-id', { type: 'string', describe: 'this gateway id' })
        .option('replica', {
          type: 'string',
          describe: 'enroll as this replica of the gateway id (its own keys and token; replaces only this replica)',
        }),
    async (argv) => {
      try {
        const loaded = loadFromArgv(gatewayConfigSchema, argv);
        const warning = tokenOnCommandLineWarning(gatewayConfigSchema, loaded.origins.enrollment_token);
        if (warning) process.stderr.write(`infisical-gateway: ${warning}\n`);
        const out = await enrollCommand(loaded.config);
        process.stdout.write(
          argv['json']
            ? `${JSON.stringify(out, null, 2)}\n`
            : `enrolled ${String(out['gatewayUri'])}${out['replica'] ? ` (replica ${String(out['replica'])})` : ''}\n  database ${String(out['database'])}\n  proxies ${(out['proxies'] as string[]).join(', ') || '(none yet)'}\n`,
        );
      } catch (err) {
        fail(err, Boolean(argv['json']));
      }
    },
  )
  .command(enrolledCommands({ configOf, renew: renewCommand, status: statusCommand, fail }))
  .command(
    'serve',
    'keep tunnels to every proxy and serve streams (READY=1 once a tunnel is up, SIGHUP reload, SIGTERM drain)',
    (y) =>
      y
        .option('ops-listen', { type: 'string', describe: 'ops endpoint host:port (default 127.0.0.1:9472)' })
        .option('allow-cidr', { type: 'array', string: true, describe: 'allowed target address range (repeatable)' })
        .option('allow-host', { type: 'array', string: true, describe: 'allowed target host name (repeatable)' })
        .option('allow-port', { type: 'array', string: true, describe: 'allowed target port or range (repeatable)' })
        .option('target', { type: 'array', string: true, describe: 'named target name=host:port (repeatable)' })
        .option('drain-timeout', { type: 'string', describe: 'SIGTERM drain bound (default 30s)' })
        .options(
          flagOptions(gatewayConfigSchema, [
            'ops_allow_remote',
            'http_upstream_tls',
            'http_upstream_ca',
            'keepalive_interval',
            'keepalive_count_max',
            'reconnect_base',
            'reconnect_cap',
            'max_streams',
            'handshake_timeout',
            'hold_inner_sessions',
            'max_pending_channels',
            'max_held_sessions',
            'connect_timeout',
            'revocation_poll',
            'feed_wait',
            'feed_stale_after',
          ]),
        ),
    async (argv) => {
      try {
        const config = configOf(argv);
        const logger = createLogger({
          daemon: 'gateway',
          version: GATEWAY_VERSION,
          level: config.log_level as LogLevel,
        });
        await serve(config, logger, () => configOf(argv));
      } catch (err) {
        fail(err, Boolean(argv['json']));
        process.exit();
      }
    },
  )
  .demandCommand(1, 'name a command (see --help)')
  .strict()
  .version(GATEWAY_VERSION)
  .help()
  .wrap(Math.min(120, process.stdout.columns || 120))
  .parseAsync();
