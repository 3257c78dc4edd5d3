#!/usr/bin/env node
/**
 * infisical-ca: the certificate authority and control plane. This file only wires: commands → lib/ca.
 * Configuration: flags > environment (INFISICAL_CA_*) > /etc/infisical/ca.conf > defaults (lib/ca/config.ts).
 * Admin subcommands act on the local state directory as the instance admin (see lib/ca/cli.ts).
 */
import { createInterface } from 'node:readline/promises';
import type { ArgumentsCamelCase, Argv } from 'yargs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { VERSION } from '../lib/ca/authority.js';
import * as cli from '../lib/ca/cli.js';
import { caConfigSchema } from '../lib/ca/config.js';
import { type CaConfig, serve } from '../lib/ca/serve.js';
import { GatewayError } from '../lib/errors/codes.js';
import { GRANT_MODES, type GrantMode } from '../lib/pki/grant.js';
import { REVOCATION_KINDS } from '../lib/protocol/api.js';
import { loadFromArgv } from '../lib/runtime/config.js';
import { flagOptions } from '../lib/runtime/config-doc.js';
import { createLogger } from '../lib/runtime/log.js';
import type { LogLevel } from '../lib/runtime/runtime-keys.js';

type Args = ArgumentsCamelCase<Record<string, unknown>>;

/** Flags (those the schema declares) > environment > config file > defaults. */
function configOf(argv: Args): CaConfig {
  return loadFromArgv(caConfigSchema, argv).config;
}

/** Runs a command, printing its output as text or JSON; failures print a code and exit non-zero. */
function run(fn: (argv: Args, config: CaConfig) => Promise<cli.Output | undefined> | cli.Output | undefined) {
  return async (argv: Args) => {
    try {
      const output = await fn(argv, configOf(argv));
      if (output) process.stdout.write(`${argv['json'] ? JSON.stringify(output.json, null, 2) : output.text}\n`);
    } catch (err) {
      const code = err instanceof GatewayError ? err.code : 'E_INTERNAL';
      const message = (err as Error).message;
      if (argv['json']) process.stdout.write(`${JSON.stringify({ code, message })}\n`);
      else process.stderr.write(`infisical-ca: ${code}: ${message}\n`);
      process.exitCode = cli.cliExitStatus(code);
    }
  };
}

/** The y/N question of `org delete` without --yes, on a terminal only (a script must say --yes). */
const ask: cli.Ask = process.stdin.isTTY
  ? async (question) => {
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        return /^y(es)?$/i.test((await rl.question(question)).trim());
      } finally {
        rl.close();
      }
    }
  : undefined;

const str = (argv: Args, name: string): string => String(argv[name]);
const list = (argv: Args, name: string): string[] => ((argv[name] as unknown[] | undefined) ?? []).map(String);

function globalOptions(y: Argv): Argv {
  return y
    .option('config', { type: 'string', describe: 'config file (default /etc/infisical/ca.conf)', global: true })
    .option('state-dir', {
      type: 'string',
      describe: 'state directory (default $STATE_DIRECTORY or /var/lib/infisical-ca)',
      global: true,
    })
    .option('store', {
      type: 'string',
      describe:
        'where the records are: postgres://user@host/db (shared by CA replicas) or file:PATH holding that URL (mode 0600); default SQLite ca.db in the state directory',
      global: true,
    })
    .option('json', { type: 'boolean', describe: 'print results as JSON', global: true })
    .option('log-level', { type: 'string', describe: 'fatal|error|warn|info|debug|trace', global: true })
    .option('trust-domain', { type: 'string', describe: 'SPIFFE trust domain (fixed at init)', global: true });
}

await globalOptions(yargs(hideBin(process.argv)))
  .scriptName('infisical-ca')
  .usage('$0 <command> [options]\n\nCertificate authority and control plane of the gateway suite.')
  .command(
    'init',
    'create the instance CAs, the admin credential (printed once) and the API server certificate',
    (y) =>
      y.option('api-name', {
        type: 'array',
        string: true,
        describe: 'API cert DNS names / IPs (default localhost,127.0.0.1)',
      }),
    run((_a, config) => cli.initCommand(config)),
  )
  .command(
    'serve',
    'run the HTTPS API and the ops endpoint (READY=1, SIGHUP reload, SIGTERM drain)',
    (y) =>
      y
        .option('listen', { type: 'string', describe: 'API address host:port (default 127.0.0.1:8443: loopback only)' })
        .option('ops-listen', { type: 'string', describe: 'ops endpoint host:port (default 127.0.0.1:9471)' })
        .option('token-ttl', { type: 'string', describe: 'access token lifetime (default 15m)' })
        .option('grant-ttl', { type: 'string', describe: 'default grant lifetime (default 5m)' })
        .option('drain-timeout', { type: 'string', describe: 'SIGTERM drain bound (default 30s)' })
        .options(flagOptions(caConfigSchema, ['ops_allow_remote', 'supersede_grace', 'tls_min_version'])),
    run(async (argv, config) => {
      const logger = createLogger({ daemon: 'ca', version: VERSION, level: config.log_level as LogLevel });
      await serve(config, logger, () => configOf(argv));
      return undefined;
    }),
  )
  .command(
    'api-cert',
    're-issue the API server certificate (then re-pin clients and SIGHUP serve)',
    (y) => y.option('api-name', { type: 'array', string: true, describe: 'DNS names / IPs' }),
    run((_a, config) => cli.apiCertCommand(config)),
  )
  .command('org', 'create, list or delete orgs (each org gets six CAs of its own)', (y) =>
    y
      .command(
        'create <orgId>',
        'create an org',
        {},
        run((a, c) => cli.orgCommands.create(c, str(a, 'orgId'))),
      )
      .command(
        'list',
        'list orgs',
        {},
        run((_a, c) => cli.orgCommands.list(c)),
      )
      .command(
        'delete <orgId>',
        'delete an org: revoke all it had, destroy its CA keys (asks on a terminal; --yes otherwise)',
        (z) => z.option('yes', { type: 'boolean', describe: 'confirm: this cannot be undone' }),
        run((a, c) => cli.orgCommands.delete(c, str(a, 'orgId'), { yes: Boolean(a['yes']), ask })),
      )
      .demandCommand(1),
  )
  .command('identity', 'machine identities of an org (client id + secret)', (y) =>
    y
      .command(
        'create <orgId> <identityId>',
        'create an identity; prints its secret once',
        (z) =>
          z
            .option('role', { choices: ['member', 'org-admin'] as const, default: 'member' as const })
            .option('group', { type: 'array', string: true, describe: 'groups (for policy rules group:<name>)' }),
        run((a, c) =>
          cli.identityCommands.create(
            c,
            str(a, 'orgId'),
            str(a, 'identityId'),
            a['role'] as 'member' | 'org-admin',
            list(a, 'group'),
          ),
        ),
      )
      .command(
        'list <orgId>',
        'list identities',
        {},
        run((a, c) => cli.identityCommands.list(c, str(a, 'orgId'))),
      )
      .demandCommand(1),
  )
  .command(
    'token',
    'create a one-time enrollment token for a gateway or proxy',
    (y) =>
      y
        .option('org', { type: 'string', describe: 'org id (omit for an instance proxy)' })
        .option('kind', { choices: ['gateway', 'proxy'] as const, demandOption: true })
        .option('subject', { type: 'string', demandOption: true, describe: 'gateway or proxy id' })
        .option('ttl', { type: 'number', describe: 'seconds (default 3600)' }),
    run((a, c) =>
      cli.tokenCommand(
        c,
        (a['org'] as string | undefined) ?? null,
        a['kind'] as 'gateway' | 'proxy',
        str(a, 'subject'),
        a['ttl'] as number | undefined,
      ),
    ),
  )
  .command('proxy', 'enrolled proxies', (y) =>
    y
      .command(
        'list',
        'list proxies: id, scope, current certificate serial and expiry, revoked, enrolled and renewed times, online, last seen, version',
        {},
        run((_a, c) => cli.listCommands.proxies(c)),
      )
      .demandCommand(1),
  )
  .command('gateway', 'enrolled gateways', (y) =>
    y
      .command(
        'list <orgId>',
        'list gateways of an org: id, current certificate serial and expiry, revoked, enrolled and renewed times, online, last seen, version; then one line per replica: replica, serial, expiry, online, last seen, version',
        {},
        run((a, c) => cli.listCommands.gateways(c, str(a, 'orgId'))),
      )
      .demandCommand(1),
  )
  .command('grant', 'issued access grants', (y) =>
    y
      .command(
        'list <orgId>',
        'newest grants of an org',
        (z) => z.option('limit', { type: 'number', default: 50 }),
        run((a, c) => cli.listCommands.grants(c, str(a, 'orgId'), Number(a['limit']))),
      )
      .demandCommand(1),
  )
  .command('policy', 'access policy rules of an org (deny by default)', (y) =>
    y
      .command(
        'add <orgId>',
        'add a rule: <subject> may reach <targets> through <gateways> in <modes>',
        (z) =>
          z
            .option('id', { type: 'string' })
            .option('subject', { type: 'string', demandOption: true, describe: 'identity:<id> or group:<name>' })
            .option('gateway', { type: 'array', string: true, demandOption: true, describe: 'gateway ids or *' })
            .option('target', {
              type: 'array',
              string: true,
              demandOption: true,
              describe: 'host:ports or name:<target>',
            })
            .option('mode', { type: 'array', string: true, choices: GRANT_MODES, default: ['tcp'] }),
        run((a, c) =>
          cli.policyCommands.add(c, str(a, 'orgId'), {
            ...(a['id'] !== undefined ? { id: str(a, 'id') } : {}),
            subject: str(a, 'subject'),
            gateways: list(a, 'gateway'),
            targets: list(a, 'target'),
            modes: list(a, 'mode') as GrantMode[],
          }),
        ),
      )
      .command(
        'list <orgId>',
        'list rules',
        {},
        run((a, c) => cli.policyCommands.list(c, str(a, 'orgId'))),
      )
      .command(
        'delete <orgId> <ruleId>',
        'delete a rule',
        {},
        run((a, c) => cli.policyCommands.delete(c, str(a, 'orgId'), str(a, 'ruleId'))),
      )
      .demandCommand(1),
  )
  .command(
    'revoke <kind> <subject>',
    'revoke a gateway, proxy, identity, grant or certificate (published in the signed feed)',
    (y) =>
      y
        .positional('kind', { choices: REVOCATION_KINDS })
        .option('org', {
          type: 'string',
          describe: 'org id (required for gateway and identity; omit for an instance proxy)',
        })
        .option('reason', { type: 'string' }),
    run((a, c) =>
      cli.revokeCommand(
        c,
        a['kind'] as (typeof REVOCATION_KINDS)[number],
        str(a, 'subject'),
        a['org'] as string | undefined,
        a['reason'] as string | undefined,
      ),
    ),
  )
  .command(
    'rotate <action>',
    'rotate a certificate authority in phases, with no traffic lost (see docs/operations.md, Rotating CAs)',
    (y) =>
      y
        .positional('action', {
          choices: ['start', 'next', 'rollback', 'status'] as const,
          describe:
            'start: create the new CA (phase init: both trusted); next: move one phase (init → update_clients → ' +
            'update_servers → standby) once every live component acknowledged the current one; rollback: back ' +
            'to the old CA from any phase before standby (then next); status: every CA of the scope',
        })
        .option('instance', { type: 'boolean', default: false, describe: 'the instance CAs (shared proxies)' })
        .option('org', { type: 'string', describe: "an org's CAs" })
        .option('authority', {
          type: 'string',
          describe:
            'the CA: gateway-client, gateway-server (org only), proxy-ssh-client, proxy-ssh-server, ' +
            'proxy-pki-client, proxy-pki-server',
        })
        .option('grace', {
          type: 'string',
          describe: 'with start: automatic mode; the CA daemon moves each phase after this long (e.g. 10m) when it may',
        }),
    run((a, c) =>
      cli.rotateCommand(c, a['action'] as 'start' | 'next' | 'rollback' | 'status', {
        instance: a['instance'] === true,
        org: a['org'] as string | undefined,
        authority: a['authority'] as string | undefined,
        grace: a['grace'] as string | undefined,
      }),
    ),
  )
  .command(
    'migrate',
    'move the CA from SQLite to PostgreSQL in one transaction: every table row for row, counts verified',
    (y) =>
      y
        .usage(
          '$0 migrate [--from sqlite:PATH] --to postgres://user@host/db\n\n' +
            'The move: 1. stop serve (migrate refuses while it runs on the directory); 2. migrate (the target ' +
            'database must be empty; it is created, filled and committed whole, or left as it was); 3. set ' +
            '`store` to the URL in the config (or --store); 4. start serve, then more replicas, each with a copy of ' +
            'the state directory (it holds sealing.key). The SQLite file is left as it was: keep it as the backup ' +
            'of this moment.',
        )
        .option('from', {
          type: 'string',
          describe: 'sqlite:PATH of the CA database (default: ca.db in the state directory)',
        })
        .option('to', {
          type: 'string',
          demandOption: true,
          describe: 'postgres://user@host/db, or file:PATH holding that URL (mode 0600)',
        }),
    run((a, c) => cli.migrateCommand(c, a['from'] as string | undefined, str(a, 'to'))),
  )
  .command(
    'audit',
    'print audit entries (logins, issuance, denials, revocations)',
    (y) => y.option('since', { type: 'number', default: 0, describe: 'entries after this seq' }),
    run((a, c) => cli.auditCommand(c, Number(a['since']))),
  )
  .demandCommand(1, 'name a command (see --help)')
  .strict()
  .epilogue(cli.EXIT_STATUS_HELP)
  // Usage errors are bad input too: the same status as an invalid id.
  .fail((msg, err) => {
    if (err) throw err;
    process.stderr.write(`infisical-ca: E_REQUEST_INVALID: ${msg} (see --help)\n`);
    process.exit(cli.EXIT_BAD_INPUT);
  })
  .version(VERSION)
  .help()
  .wrap(Math.min(120, process.stdout.columns || 120))
  .parseAsync();
