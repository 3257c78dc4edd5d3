/**
 * A log line per kind of event at most once per interval: for refusals a flood produces (connections over a
 * limit, channels over a cap), where one line per event would turn the flood into a flood of log lines. The
 * first event of a kind is logged at once; later ones within the interval are only counted, and the next line
 * carries `suppressed`: how many were not logged since. Metrics count every one.
 */

export interface WarnLog {
  warn(fields: object, message: string): void;
}

export type SampledWarn = (kind: string, fields: Record<string, unknown>, message: string) => void;

export function sampledWarn(log: WarnLog | undefined, intervalMs: number, now: () => number = Date.now): SampledWarn {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (kind, fields, message) => {
    const t = now();
    const seen = last.get(kind);
    if (seen && t - seen.at < intervalMs) {
      seen.suppressed++;
      return;
    }
    last.set(kind, { at: t, suppressed: 0 });
    log?.warn({ ...fields, ...(seen?.suppressed ? { suppressed: seen.suppressed } : {}) }, message);
  };
}
