/**
 * What SIGHUP does with each config key, as the schema marks it (config-schema.ts `Reload`): a changed
 * restart-only key is logged, never silently ignored, and the value each live key has in the running daemon is
 * on /metrics (`infisical_<daemon>_live_setting{key,value} 1`), read back from the parts that use it, so an
 * operator (and the tests) can see that a reload took.
 */
import type { ConfigOf, ConfigSchema, KeySpec, Keys, KeyValue, LiveKeys } from './config-schema.js';
import { formatValue } from './config-schema.js';
import type { DaemonMetrics } from './metrics.js';

/** Every live key of a schema, with the value the running daemon uses now. */
export type LiveSettings<S extends Keys> = { readonly [N in LiveKeys<S>]: KeyValue<S[N]> };

/**
 * Logs "<key> changed, takes effect at restart" for each restart-only key whose value in `next` differs from
 * the one the daemon started with (`running`); returns those keys.
 */
export function logRestartOnly<S extends Keys>(
  schema: ConfigSchema<S>,
  running: ConfigOf<S>,
  next: ConfigOf<S>,
  log: { warn(fields: object, message: string): void },
): string[] {
  const changed: string[] = [];
  for (const [key, spec] of Object.entries(schema.keys) as [string, KeySpec][]) {
    if (spec.reload !== 'restart') continue;
    const before = (running as Record<string, unknown>)[key];
    const after = (next as Record<string, unknown>)[key];
    if (JSON.stringify(before) === JSON.stringify(after)) continue;
    changed.push(key);
    log.warn({ key, reload: 'restart' }, `${key} changed, takes effect at restart`);
  }
  return changed;
}

/**
 * Registers `<prefix>live_setting{key,value}`: one series per live key, its value as the config file writes it
 * (durations as 30s, lists comma-separated; a secret is redacted), taken from `effective` at each scrape.
 */
export function registerLiveSettings<S extends Keys>(
  metrics: DaemonMetrics,
  schema: ConfigSchema<S>,
  /** The daemon's own live keys; the ones every daemon has (runtime-keys.ts) are read from `runtime`. */
  effective: () => Omit<LiveSettings<S>, 'log_level' | 'drain_timeout'>,
  runtime: { logger: { level: string }; drainTimeoutMs: () => number },
): void {
  metrics.gauge(
    `${metrics.prefix}live_setting`,
    'Each config key SIGHUP applies, labelled with the value the running daemon uses now (as the config file writes it)',
    ['key', 'value'],
    (g) => {
      g.reset();
      const all = { ...effective(), log_level: runtime.logger.level, drain_timeout: runtime.drainTimeoutMs() };
      for (const [key, value] of Object.entries(all) as [string, unknown][]) {
        const spec = schema.keys[key];
        if (!spec) continue;
        const text = value === undefined ? '' : spec.secret ? '<redacted>' : formatValue(spec.type, value);
        g.set({ key, value: text }, 1);
      }
    },
  );
}
