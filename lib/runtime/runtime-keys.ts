/**
 * Config keys every daemon shares (logging, ops endpoint, state directory, drain): spread them into a
 * daemon's schema so the names, defaults and docs are the same in all three daemons.
 */
import { durationRange, hostPort, keys, oneOf } from './config-schema.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function runtimeKeys(defaults: { opsListen: string }) {
  return {
    log_level: keys.string({
      reload: 'live',
      default: 'info',
      placeholder: LOG_LEVELS.join('|'),
      description: 'Lowest level of log lines written to stdout.',
      validate: oneOf(...LOG_LEVELS),
    }),
    ops_listen: keys.string({
      reload: 'restart',
      default: defaults.opsListen,
      placeholder: 'host:port',
      description:
        'Address of the ops HTTP endpoint (/livez, /readyz, /metrics). Loopback only unless ops_allow_remote.',
      validate: hostPort,
    }),
    ops_allow_remote: keys.bool({
      reload: 'restart',
      default: false,
      description: 'Allow ops_listen on a non-loopback address (put a firewall in front of it).',
    }),
    state_directory: keys.path({
      reload: 'restart',
      optional: true,
      flag: 'state-dir',
      description:
        'Directory of the state database; default $STATE_DIRECTORY (systemd) or /var/lib/infisical-<daemon>.',
    }),
    drain_timeout: keys.duration({
      reload: 'live',
      default: 30_000,
      description: 'On SIGTERM, how long established connections may finish before the daemon exits.',
      validate: durationRange(0, 3_600_000),
    }),
  };
}
