/**
 * PostgreSQL URLs as libpq reads them (postgres[ql]://[user[:password]@][host[:port][,host[:port]…]][/db][?k=v&…]).
 * Written by hand because WHATWG `URL` refuses a multi-host URL with ports (`db-a:5432,db-b:5432`), the form a
 * primary with standbys is named by (with `target_session_attrs=read-write`). No imports: the CA's config schema
 * validates with it and is bundled alone.
 */

export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

interface PostgresUrlParts {
  /** `postgres://` */
  scheme: string;
  user: string | undefined;
  password: string | undefined;
  /** host[:port][,host[:port]…] as written. */
  hosts: string;
  /** `/db` or empty. */
  path: string;
  params: URLSearchParams;
}

function parts(url: string): PostgresUrlParts | undefined {
  const m = /^(postgres(?:ql)?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(url);
  if (!m) return undefined;
  const userinfo = m[2];
  const colon = userinfo?.indexOf(':') ?? -1;
  return {
    scheme: m[1]!,
    user: userinfo === undefined ? undefined : colon < 0 ? userinfo : userinfo.slice(0, colon),
    password: userinfo === undefined || colon < 0 ? undefined : userinfo.slice(colon + 1),
    hosts: m[3]!,
    path: m[4] ?? '',
    params: new URLSearchParams(m[5] ?? ''),
  };
}

function format(p: PostgresUrlParts): string {
  const userinfo = p.user === undefined ? '' : `${p.user}${p.password === undefined ? '' : `:${p.password}`}@`;
  const query = p.params.toString();
  return `${p.scheme}${userinfo}${p.hosts}${p.path}${query ? `?${query}` : ''}`;
}

/** Why `url` is not a PostgreSQL URL libpq can read, or undefined. */
export function postgresUrlProblem(url: string): string | undefined {
  const p = parts(url);
  if (!p) return 'expected a postgres:// URL (not parsable as one)';
  for (const host of p.hosts.split(',')) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]*)(?::(\d*))?$/.exec(host);
    if (!m)
      return `expected host[:port] in a postgres:// URL, got "${host.length > 64 ? `${host.slice(0, 64)}…` : host}"`;
    if (m[2] !== undefined && m[2] !== '' && Number(m[2]) > 65_535) return `port ${m[2]} is out of range`;
  }
  return undefined;
}

/**
 * libpq parameters the URL does not set: a connect that gives up after 10 s, TCP keepalives that notice a dead
 * server within about a minute (the calls block the CA's event loop while they wait).
 */
export function withConnectionDefaults(url: string): string {
  const p = parts(url);
  if (!p) return url; // libpq says what is wrong with it
  const defaults: Record<string, string> = {
    connect_timeout: '10',
    keepalives: '1',
    keepalives_idle: '30',
    keepalives_interval: '10',
    keepalives_count: '3',
  };
  for (const [key, value] of Object.entries(defaults)) if (!p.params.has(key)) p.params.set(key, value);
  return format(p);
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  const p = parts(url);
  if (!p) return 'postgres://(unparsable URL)';
  if (p.password) p.password = '***';
  for (const key of ['password', 'sslpassword']) if (p.params.has(key)) p.params.set(key, '***');
  return format(p);
}
