/**
 * Structured logs: JSON lines on stdout (journald stores them; nothing here rotates files), one logger per
 * daemon with its name and version bound, plus audit records for grants issued and streams carried.
 * Writes are synchronous so the lines written just before an exit or a crash are not lost in a buffer;
 * the daemons log per connection, not per packet, so this costs little.
 */
import { pino } from 'pino';

export type Logger = pino.Logger;

/** Field paths whose values are replaced by "[redacted]" wherever a caller logs them by mistake. */
export const REDACTED_PATHS = [
  'token',
  'secret',
  'password',
  'privateKey',
  'authorization',
  'clientSecret',
  '*.token',
  '*.secret',
  '*.password',
  '*.privateKey',
  '*.authorization',
  '*.clientSecret',
];

export interface LoggerOptions {
  /** Short daemon name, e.g. "proxy". */
  daemon: string;
  version: string;
  /** One of LOG_LEVELS (config key log_level validates it; pino throws on anything else). */
  level: string;
  /** Where lines go; default stdout (fd 1), synchronously. Tests pass a stream. */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: options.level,
      base: { daemon: options.daemon, version: options.version, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level as a word: operators grep and journald readers see "warn", not 40.
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}

/** One audit event as stored by a sink: what happened, when, and its fields. */
export interface AuditRecord {
  readonly event: string;
  /** ISO 8601 time of the event. */
  readonly time: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** Persists audit records (the daemons write them to SQLite). */
export type AuditSink = (record: AuditRecord) => void;

export type Audit = (event: string, fields?: Record<string, unknown>) => void;

export interface AuditOptions {
  /** Called after the log line is written; see createAudit for error handling. */
  sink?: AuditSink;
  /** Injected clock for tests. */
  now?: () => Date;
}

/**
 * Returns `audit(event, fields)`: writes an info line (even when log_level is above info) with `audit: true` and `event`, then hands the record
 * to the sink. A sink failure is logged and rethrown, so a caller that must not proceed without a durable
 * audit record (issuing a grant) can refuse; callers that only report (a stream closed) catch it.
 */
export function createAudit(logger: Logger, options: AuditOptions = {}): Audit {
  const now = options.now ?? (() => new Date());
  // Audit lines are written whatever log_level says: an operator quieting the logs must not lose the trail.
  const auditLog = logger.child({}, { level: 'info' });
  return (event, fields = {}) => {
    const time = now().toISOString();
    // `audit` and `event` are set last so a field cannot mask them.
    auditLog.info({ ...fields, audit: true, event }, event);
    if (!options.sink) return;
    try {
      options.sink(Object.freeze({ event, time, fields: Object.freeze({ ...fields }) }));
    } catch (err) {
      logger.error({ err, event, audit_sink_failed: true }, 'audit record was not persisted');
      throw err;
    }
  };
}
