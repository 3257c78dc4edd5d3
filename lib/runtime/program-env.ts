/**
 * The INFISICAL_* variables of the suite that are not daemon config keys (those are INFISICAL_<DAEMON>_<KEY>,
 * one per schema key: config-schema.ts envName). Each program reads only the names it documents, from these
 * explicit lists, never "anything with our prefix": one shell often holds the variables of several programs
 * (`make run` passes INFISICAL_QUICKSTART_PORT_BASE to every daemon it starts), and other tools use the prefix.
 */

/** infisical-connect: the flags that also read INFISICAL_<FLAG>, per command (flags given win). */
export const CONNECT_FLAG_ENV = {
  global: ['ca', 'ca-fingerprint', 'org', 'client-id', 'client-secret-file', 'json', 'ttl', 'timeout'],
  tcp: ['gateway', 'target', 'listen', 'warm-relay'],
  http: ['gateway', 'target', 'listen', 'warm-relay'],
  ping: ['gateway', 'target', 'count'],
} as const satisfies Record<string, readonly string[]>;

/** infisical-connect: the client secret itself (never a flag: command lines are visible to other users). */
export const CONNECT_SECRET_ENV = 'INFISICAL_CLIENT_SECRET';

/** `make run` (daemons/quickstart.ts): the first of the quickstart's ports (--port-base). */
export const QUICKSTART_PORT_BASE_ENV = 'INFISICAL_QUICKSTART_PORT_BASE';

/** "ca-fingerprint" → "INFISICAL_CA_FINGERPRINT". */
export function flagEnvName(flag: string): string {
  return `INFISICAL_${flag.toUpperCase().replaceAll('-', '_')}`;
}

/**
 * The given flags' values found in the environment, by flag name, for yargs' `.config()` (below flags, above
 * defaults). A variable set to the empty string counts as unset, as in the daemons' config loader.
 */
export function flagsFromEnv(
  flags: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const flag of flags) {
    const value = env[flagEnvName(flag)];
    if (value !== undefined && value !== '') out[flag] = value;
  }
  return out;
}

/**
 * Every name above. The daemons' config loader refuses an unknown variable with its own prefix (a misspelt key),
 * but INFISICAL_CA_FINGERPRINT, say, is infisical-connect's and may well be set beside infisical-ca.
 */
export const NON_DAEMON_ENV: ReadonlySet<string> = new Set([
  ...Object.values(CONNECT_FLAG_ENV).flatMap((flags) => flags.map(flagEnvName)),
  CONNECT_SECRET_ENV,
  QUICKSTART_PORT_BASE_ENV,
]);
