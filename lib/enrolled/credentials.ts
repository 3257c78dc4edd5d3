/**
 * What `enroll` proves itself with, the same for the gateway and the proxy: a one-time enrollment token (from
 * --token-file, standard input, the environment or, with a warning, --token), else a machine identity's client
 * id and the secret in --client-secret-file. Secret files are read through lib/runtime/secret-file.ts, which
 * refuses one that group or others may read. Resolved before the state directory is touched or the CA asked.
 */
import { GatewayError } from '../errors/codes.js';
import type { Origin } from '../runtime/config.js';
import { type ConfigSchema, envName } from '../runtime/config-schema.js';
import { readSecretFile } from '../runtime/secret-file.js';

export type EnrollmentCredential =
  | { kind: 'token'; token: string }
  | { kind: 'login'; clientId: string; clientSecret: string };

/** The keys of enrolledKeys' enrollmentTokenKeys and the login pair, as each daemon's config holds them. */
export interface CredentialConfig {
  readonly enrollment_token: string | undefined;
  readonly enrollment_token_file: string | undefined;
  readonly client_secret_file: string | undefined;
}

export interface CredentialOptions {
  /** The client id for a login (gateway: client_id, proxy: admin_client_id), and its flag for messages. */
  clientId: string | undefined;
  clientIdFlag: string;
  /** Standard input, injected for tests. */
  readStdin?: () => Buffer;
}

export function enrollmentCredential(config: CredentialConfig, o: CredentialOptions): EnrollmentCredential {
  if (config.enrollment_token !== undefined && config.enrollment_token_file !== undefined) {
    throw new GatewayError(
      'E_CONFIG_INVALID',
      'both an enrollment token and --token-file are set (flag, environment or config file): give one',
    );
  }
  const stdin = o.readStdin ? { readStdin: o.readStdin } : {};
  if (config.enrollment_token_file !== undefined) {
    return { kind: 'token', token: readSecretFile(config.enrollment_token_file, { what: '--token-file', ...stdin }) };
  }
  if (config.enrollment_token !== undefined && config.enrollment_token !== '') {
    return { kind: 'token', token: config.enrollment_token };
  }
  if (!o.clientId) {
    throw new GatewayError(
      'E_CONFIG_INVALID',
      `enroll needs a token (--token-file, or the environment) or ${o.clientIdFlag} with --client-secret-file`,
    );
  }
  if (!config.client_secret_file) {
    throw new GatewayError('E_CONFIG_INVALID', `enroll needs --client-secret-file with ${o.clientIdFlag}`);
  }
  const clientSecret = readSecretFile(config.client_secret_file, { what: '--client-secret-file', ...stdin });
  return { kind: 'login', clientId: o.clientId, clientSecret };
}

/**
 * The warning for a token given on the command line (it still works): every user of the host can read a
 * process's arguments (`ps`, /proc/PID/cmdline). Undefined when it came from elsewhere.
 */
export function tokenOnCommandLineWarning(schema: ConfigSchema, origin: Origin | undefined): string | undefined {
  if (origin?.source !== 'flag') return undefined;
  return (
    `warning: ${origin.flag} puts the enrollment token on the command line, where every user of this host can ` +
    `read it (ps); use --token-file PATH, --token-file - (standard input) or ` +
    `${envName(schema, 'enrollment_token')} instead`
  );
}
