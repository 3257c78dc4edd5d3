#!/usr/bin/env node
/**
 * infisical-connect: reach a private target through a gateway, from this machine (the platform side).
 * This file only wires: flags → CA client → lib/client (grant cache, proxy failover, local listeners).
 * Flags > environment (INFISICAL_<FLAG> for the flags listed in lib/runtime/program-env.ts, and
 * INFISICAL_CLIENT_SECRET) > defaults. No other variable is read: the shell may hold other programs' INFISICAL_*.
 */
// First: V8 settings for moving bytes (lib/runtime/v8-flags.ts), before anything allocates.
import '../lib/runtime/v8-flags.js';
import type { ArgumentsCamelCase, Argv } from 'yargs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CaGrantSource } from '../lib/client/ca-source.js';
import { GatewayConnector } from '../lib/client/connector.js';
import { atHop, EXIT_CODE_HELP, exitCodeFor } from '../lib/client/errors.js';
import { LocalForwarder } from '../lib/client/forward.js';
import { ping } from '../lib/client/ping.js';
import { count, StatusReporter } from '../lib/client/status.js';
import { parseHttpTarget, parseListen, parseTcpTarget, showTarget } from '../lib/client/target.js';
import { DEFAULT_WARM_MAX_AGE_MS } from '../lib/client/warm.js';
import { GatewayError, unwrap } from '../lib/errors/codes.js';
import type { GrantTarget } from '../lib/pki/grant.js';
import { CaClient } from '../lib/protocol/ca-client.js';
import { CONNECT_FLAG_ENV, CONNECT_SECRET_ENV, flagEnvName, flagsFromEnv } from '../lib/runtime/program-env.js';
import { readSecretFile } from '../lib/runtime/secret-file.js';

const VERSION = '0.1.0';

/** The environment this program reads, for --help: the names, not a pattern (nothing else is read). */
const ENV_HELP = [
  'Environment (a flag given wins; an empty variable counts as unset; no other INFISICAL_* variable is read):',
  `  every command: ${CONNECT_FLAG_ENV.global.map(flagEnvName).join(', ')}`,
  `  ${CONNECT_SECRET_ENV}: the client secret itself, when --client-secret-file is not given`,
  ...(['tcp', 'http', 'ping'] as const).map((c) => `  ${c}: ${CONNECT_FLAG_ENV[c].map(flagEnvName).join(', ')}`),
].join('\n');
type Args = ArgumentsCamelCase<Record<string, unknown>>;

function commonOptions(y: Argv): Argv {
  return y
    .option('ca', {
      type: 'string',
      describe:
        'CA API URL (https://host:port); repeat it, or give a comma-separated list, for replicas of one CA: the next is tried when one cannot be reached',
      global: true,
    })
    .option('ca-fingerprint', {
      type: 'string',
      describe: 'SHA-256 fingerprint of the CA API certificate (sha256:hex, printed by `infisical-ca init`)',
      global: true,
    })
    .option('org', { type: 'string', describe: 'organization id', global: true })
    .option('client-id', { type: 'string', describe: 'machine identity client id', global: true })
    .option('client-secret-file', {
      type: 'string',
      nargs: 1, // "-" is its value (standard input), not a positional
      describe: `file holding the client secret, chmod 600; - reads standard input (or env ${CONNECT_SECRET_ENV}; never a flag)`,
      global: true,
    })
    .option('json', {
      type: 'boolean',
      default: false,
      describe: 'JSON lines on stdout instead of human text',
      global: true,
    })
    .option('ttl', {
      type: 'number',
      describe: 'requested grant lifetime in seconds (the CA may shorten it)',
      global: true,
    })
    .option('timeout', {
      type: 'number',
      default: 10,
      describe: 'seconds allowed for each connection step',
      global: true,
    });
}

/** A command's own flags from the environment (its INFISICAL_<FLAG> names, nothing else). */
function commandEnv(y: Argv, command: keyof typeof CONNECT_FLAG_ENV): Argv {
  return y.config(flagsFromEnv(CONNECT_FLAG_ENV[command], process.env));
}

function gatewayOption(y: Argv): Argv {
  return y.option('gateway', { type: 'string', demandOption: true, describe: 'gateway id to go through' });
}

function listenOption(y: Argv): Argv {
  return y
    .option('listen', {
      type: 'string',
      default: '127.0.0.1:0',
      describe: 'local address to accept connections on ([HOST:]PORT; port 0 picks one and prints it)',
    })
    .option('warm-relay', {
      type: 'number',
      default: DEFAULT_WARM_MAX_AGE_MS / 1000,
      describe:
        "after a connection opened, open the next relay (TLS to the proxy, its channel to the gateway) ahead of need and hold it up to this many seconds, so the next connection runs only the TLS handshake with the gateway; 0: none (0 to 8: the gateway's handshake_timeout, 10 s by default, must stay above it)",
    });
}

/** Everything a command needs: the reporter, and a connector built from flags (lazily, so --help needs none). */
function setup(argv: Args) {
  const status = new StatusReporter({ json: Boolean(argv['json']), stdout: process.stdout, stderr: process.stderr });
  const need = (name: string): string => {
    const v = argv[name];
    if (typeof v !== 'string' || v === '') {
      throw new GatewayError('E_CONFIG_INVALID', `--${name} is required (or env ${flagEnvName(name)})`);
    }
    return v;
  };
  /** --ca given once, several times (yargs collects an array) or as a comma-separated list. */
  const caUrls = (): string[] => {
    const v = argv['ca'];
    const list = (Array.isArray(v) ? v : [v]).filter((u): u is string => typeof u === 'string' && u !== '');
    if (list.length === 0) throw new GatewayError('E_CONFIG_INVALID', `--ca is required (or env ${flagEnvName('ca')})`);
    return list;
  };
  const connector = () => {
    const secretFile = argv['client-secret-file'];
    const clientSecret =
      typeof secretFile === 'string'
        ? readSecretFile(secretFile, { what: '--client-secret-file' })
        : (process.env[CONNECT_SECRET_ENV] ?? '');
    if (!clientSecret)
      throw new GatewayError(
        'E_CONFIG_INVALID',
        `--client-secret-file (or ${flagEnvName('client-secret-file')}, or ${CONNECT_SECRET_ENV}) is required`,
      );
    const stepTimeoutMs = Number(argv['timeout'] ?? 10) * 1000;
    const ca = new CaClient({ url: caUrls(), fingerprint: need('ca-fingerprint'), timeoutMs: stepTimeoutMs });
    const source = new CaGrantSource({ ca, clientId: need('client-id'), clientSecret });
    const ttl = argv['ttl'];
    const warm = argv['warm-relay'];
    // A held relay must not meet the gateway's handshake_timeout (10 s by default), which runs while it waits.
    if (warm !== undefined && !(typeof warm === 'number' && warm >= 0 && warm <= 8)) {
      throw new GatewayError('E_CONFIG_INVALID', `--warm-relay must be a number of seconds from 0 to 8, not ${warm}`);
    }
    return new GatewayConnector({
      source,
      orgId: need('org'),
      gatewayId: need('gateway'),
      ...(typeof ttl === 'number' ? { ttlSeconds: ttl } : {}),
      stepTimeoutMs,
      ...(typeof warm === 'number' ? { warmRelayMs: warm * 1000 } : {}),
      onProgress: status.progress,
    });
  };
  return { status, connector };
}

/**
 * Binds the listen address first (a busy port fails before the CA is asked for anything), then gets the grant
 * (fails fast on login or policy), then serves until SIGINT/SIGTERM.
 */
async function forward(argv: Args, mode: 'tcp' | 'http', target: GrantTarget, shown: string): Promise<void> {
  const { status, connector: make } = setup(argv);
  let done: (() => void) | undefined;
  let forwarder: LocalForwarder | undefined;
  try {
    const listen = unwrap(parseListen(String(argv['listen'])));
    const connector = make();
    forwarder = new LocalForwarder({ connector, target, mode, ...listen, onEvent: status.forward });
    const addr = await forwarder.listen();
    done = status.begin(`asking the CA for a ${mode} grant to ${shown} through gateway ${argv['gateway']}`);
    await connector.grant(target, mode);
    done();
    const local = `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
    status.event(
      'listening',
      { address: addr.address, port: addr.port, mode, target: shown, gateway: argv['gateway'] },
      `listening on ${local} → ${shown} through gateway ${argv['gateway']} (${mode}); Ctrl-C to stop` +
        (mode === 'http' ? `\n  try: curl http://${local}/` : ''),
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await forwarder.close();
    connector.close();
    status.event(
      'stopped',
      { ...forwarder.stats },
      `stopped: ${count(forwarder.stats.opened, 'stream')}, ${forwarder.stats.failed} failed`,
    );
  } catch (err) {
    done?.();
    await forwarder?.close().catch(() => undefined);
    fail(status, err);
  }
}

function fail(status: StatusReporter, err: unknown): void {
  const e = atHop(err, 'local');
  status.error(e);
  process.exitCode = exitCodeFor(e.code);
}

async function pingCommand(argv: Args): Promise<void> {
  const { status, connector: make } = setup(argv);
  let done: (() => void) | undefined;
  try {
    const target = unwrap(parseTcpTarget(String(argv['target'])));
    const connector = make();
    done = status.begin(`asking the CA for a ping grant through gateway ${argv['gateway']}`);
    const grant = await connector.grant(target, 'ping');
    done();
    done = status.begin(
      `pinging gateway ${argv['gateway']} through ${count(grant.proxies.length, 'proxy', 'proxies')}`,
    );
    const results = await ping(connector, target, {
      count: Number(argv['count']),
      stepTimeoutMs: Number(argv['timeout']) * 1000,
      onResult: (r) => {
        done?.();
        status.ping(r);
      },
    });
    done();
    const ok = results.filter((r) => r.ok).length;
    status.event(
      'summary',
      { ok, total: results.length },
      `${ok} of ${count(results.length, 'proxy', 'proxies')} ${ok === 1 ? 'reaches' : 'reach'} gateway ${argv['gateway']}`,
    );
    const firstError = results.find((r) => !r.ok)?.error;
    if (ok === 0 && firstError) process.exitCode = exitCodeFor(firstError.code);
  } catch (err) {
    done?.();
    fail(status, err);
  }
}

await commonOptions(
  yargs(hideBin(process.argv))
    .scriptName('infisical-connect')
    .config(flagsFromEnv(CONNECT_FLAG_ENV.global, process.env))
    .usage(
      '$0 <command> [options]\n\nReach a private target through an Infisical gateway: the CA grants access, a proxy relays, and this machine runs end-to-end mTLS with the gateway.',
    )
    .wrap(null)
    .version(VERSION)
    .strict()
    .demandCommand(1, 'name a command: tcp, http or ping')
    // Bad flags exit 2, as the exit code table says (yargs would exit 1, after the whole help text).
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`${msg} (see infisical-connect --help)\n`);
      process.exit(2);
    })
    .epilogue(`${ENV_HELP}\n\nExit codes:\n${EXIT_CODE_HELP}`),
)
  .command(
    'tcp',
    'forward a local port to a private TCP target, like `ssh -L` (each local connection gets its own stream)',
    (y) =>
      listenOption(gatewayOption(commandEnv(y, 'tcp')))
        .option('target', {
          type: 'string',
          demandOption: true,
          describe: 'HOST:PORT as the gateway sees it, or name:NAME',
        })
        .example(
          '$0 tcp --gateway gw-1 --target 10.0.0.5:5432 --listen 127.0.0.1:15432',
          'then: psql -h 127.0.0.1 -p 15432',
        ),
    async (argv) => {
      const parsed = parseTcpTarget(String(argv['target']));
      if (!parsed.ok) return fail(setup(argv).status, new GatewayError(parsed.code, parsed.reason));
      await forward(argv, 'tcp', parsed.value, showTarget(parsed.value));
    },
  )
  .command(
    'http',
    'serve a local HTTP endpoint for a private HTTP service (the gateway forwards each request to the target)',
    (y) =>
      listenOption(gatewayOption(commandEnv(y, 'http')))
        .option('target', { type: 'string', demandOption: true, describe: 'the service URL as the gateway sees it' })
        .example(
          '$0 http --gateway gw-1 --target http://10.0.0.7:8080 --listen 8080',
          'then: curl http://127.0.0.1:8080/status',
        ),
    async (argv) => {
      const parsed = parseHttpTarget(String(argv['target']));
      if (!parsed.ok) return fail(setup(argv).status, new GatewayError(parsed.code, parsed.reason));
      const { host, port, url } = parsed.value;
      await forward(argv, 'http', { host, port }, url.origin);
    },
  )
  .command(
    'ping',
    'check the way to a gateway through EACH proxy: stream setup time and echo round trips (mode ping)',
    (y) =>
      gatewayOption(commandEnv(y, 'ping'))
        .option('target', {
          type: 'string',
          default: 'name:ping',
          describe: 'target named in the ping grant (the CA policy must allow mode ping for it)',
        })
        .option('count', { type: 'number', default: 4, describe: 'echo probes per proxy' }),
    pingCommand,
  )
  .help()
  .parseAsync();
