/**
 * Prometheus metrics for one daemon: a fresh prom-client Registry (never the global default, so two daemons
 * or two tests in one process cannot collide) and a small factory for domain-named series such as
 * `infisical_proxy_refusals_total{code}`. Names are checked here so a typo fails at start, not in a dashboard.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { pathCacheStats } from '../pki/path-cache.js';

const SERIES_NAME = /^[a-z][a-z0-9_]*$/;
const LABEL_NAME = /^[a-z][a-z0-9_]*$/;

export interface MetricsOptions {
  /**
   * Standard process_* and nodejs_* series (memory, CPU, event-loop lag, fds) and the process's verifier path
   * cache (lib/pki/path-cache.ts, one per process); default true.
   */
  processMetrics?: boolean;
}

export class DaemonMetrics {
  readonly registry: Registry;
  /** Every series of this daemon starts with it, e.g. "infisical_proxy_". */
  readonly prefix: string;

  constructor(daemon: string, options: MetricsOptions = {}) {
    this.prefix = `infisical_${daemon.replaceAll('-', '_')}_`;
    this.registry = new Registry();
    if (options.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      this.#pathCache();
    }
  }

  /** THE verifier's path cache: lookups since start by result, and entries held. */
  #pathCache(): void {
    this.gauge(
      `${this.prefix}verifier_path_cache_lookups`,
      'Chains looked up in the verifier path cache since start (hit: parse and signatures skipped)',
      ['result'],
      (g) => {
        const s = pathCacheStats();
        g.set({ result: 'hit' }, s.hits);
        g.set({ result: 'miss' }, s.misses);
      },
    );
    this.gauge(`${this.prefix}verifier_path_cache_entries`, 'Verified paths held by the verifier path cache', [], (g) =>
      g.set(pathCacheStats().size),
    );
  }

  #check(name: string, labelNames: readonly string[]): void {
    if (!name.startsWith(this.prefix) || !SERIES_NAME.test(name)) {
      throw new Error(`metric "${name}": expected a snake_case name starting with ${this.prefix}`);
    }
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label)) throw new Error(`metric "${name}": bad label name "${label}"`);
    }
  }

  /** A monotonically increasing count; its name must end in `_total`. */
  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    this.#check(name, labelNames);
    if (!name.endsWith('_total')) throw new Error(`counter "${name}": name must end in _total`);
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  /** A value that goes up and down; `collect` refreshes it at scrape time (e.g. tunnels up). */
  gauge<L extends string = never>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    collect?: (gauge: Gauge<L>) => void | Promise<void>,
  ): Gauge<L> {
    this.#check(name, labelNames);
    return new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      ...(collect
        ? {
            collect(this: Gauge<L>) {
              return collect(this);
            },
          }
        : {}),
    });
  }

  /** A distribution; seconds-based names should end in `_seconds` and bytes in `_bytes`. */
  histogram<L extends string = never>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    buckets?: number[],
  ): Histogram<L> {
    this.#check(name, labelNames);
    return new Histogram({ name, help, labelNames, registers: [this.registry], ...(buckets ? { buckets } : {}) });
  }

  /** The text exposition for /metrics. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
