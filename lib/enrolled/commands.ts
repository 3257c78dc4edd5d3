/**
 * The commands every enrolled component's program has beside `enroll` and `serve`, declared once for
 * `infisical-gateway` and `infisical-proxy`: `renew` and `status`. The daemon hands in how it reads its config
 * and its own renew/status functions; output (text or --json) and failures are the same in both.
 */
import type { ArgumentsCamelCase, CommandModule } from 'yargs';
import type { RenewResult } from './renew.js';
import { type StatusReport, statusText } from './status.js';

type Args = ArgumentsCamelCase<Record<string, unknown>>;

export interface EnrolledCommandParts<C> {
  configOf: (argv: Args) => C;
  renew: (config: C) => Promise<RenewResult>;
  status: (config: C) => Promise<StatusReport>;
  /** Prints a failure with its code and sets the exit status (the daemon's own). */
  fail: (err: unknown, json: boolean) => void;
}

export function enrolledCommands<C>(parts: EnrolledCommandParts<C>): CommandModule<object, Record<string, unknown>>[] {
  const run =
    <T>(fn: (config: C) => Promise<T>, print: (out: T) => string, printJson: (out: T) => string) =>
    async (argv: Args): Promise<void> => {
      try {
        const out = await fn(parts.configOf(argv));
        process.stdout.write(argv['json'] ? printJson(out) : print(out));
      } catch (err) {
        parts.fail(err, Boolean(argv['json']));
      }
    };
  return [
    {
      command: 'renew',
      describe: 'renew the certificates now; a running serve picks them up (the replaced ones stop working soon after)',
      handler: run(
        parts.renew,
        (out) =>
          `renewed: serial ${out.previousSerial} -> ${out.serial}, valid until ${out.notAfter}\n  database ${out.database}\n`,
        (out) => `${JSON.stringify(out, null, 2)}\n`,
      ),
    },
    {
      command: 'status',
      describe:
        'what this state directory is enrolled as, its certificates, revoked or not, and what a running serve reports',
      handler: run(
        parts.status,
        (report) => `${statusText(report)}\n`,
        (report) => `${JSON.stringify(report)}\n`,
      ),
    },
  ];
}
