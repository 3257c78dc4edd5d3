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
  /** The query's `k=v` pairs as written (percent-encoded as libpq decodes them: never re-encoded here). */
  query: string[];
}

function parts(url: string): PostgresUrlParts | undefined {
  const scheme = /^postgres(?:ql)?:\/\//i.exec(url)?.[0];
  if (!scheme) return undefined;
  let rest = url.slice(scheme.length);
  // As libpq: the credentials run to the first '@' that comes before any '/' (a password may hold '?', '#', ':').
  let userinfo: string | undefined;
  const end = rest.search(/[@/]/);
  if (end >= 0 && rest[end] === '@') {
    userinfo = rest.slice(0, end);
    rest = rest.slice(end + 1);
  }
  const m = /^([^/?]*)(\/[^?]*)?(?:\?(.*))?$/s.exec(rest);
  if (!m) return undefined;
  const colon = userinfo?.indexOf(':') ?? -1;
  return {
    scheme,
    user: userinfo === undefined ? undefined : colon < 0 ? userinfo : userinfo.slice(0, colon),
    password: userinfo === undefined || colon < 0 ? undefined : userinfo.slice(colon + 1),
    hosts: m[1]!,
    path: m[2] ?? '',
    query: m[3] ? m[3].split('&').filter((kv) => kv !== '') : [],
  };
}

/** A query pair's key, decoded as libpq decodes it (percent escapes only); undefined if it cannot be. */
function keyOf(pair: string): string | undefined {
  const eq = pair.indexOf('=');
  try {
    return decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
  } catch {
    return undefined;
  }
}

function format(p: PostgresUrlParts): string {
  const userinfo = p.user === undefined ? '' : `${p.user}${p.password === undefined ? '' : `:${p.password}`}@`;
  return `${p.scheme}${userinfo}${p.hosts}${p.path}${p.query.length > 0 ? `?${p.query.join('&')}` : ''}`;
}

/** Why `url` is not a PostgreSQL URL libpq can read, or undefined. */
export function postgresUrlProblem(url: string): string | undefined {
  const p = parts(url);
  if (!p) return 'expected a postgres:// URL (not parsable as one)';
  // libpq refuses these quoting the token, a password among them: refused here first, without quoting anything.
  const encoded = [p.user ?? '', p.password ?? '', p.path, ...p.query];
  if (encoded.some((text) => /%(?![0-9a-fA-F]{2})|%00/.test(text))) {
    return "a '%' in the user, password, database or parameters of a postgres:// URL must start a %XX escape (write '%' as %25)";
  }
  for (const host of p.hosts.split(',')) {
    const m = /^(\[[0-9a-fA-F:.]+(?:%25[\w.-]+)?\]|[^:[\]]*)(?::(\d*))?$/.exec(host);
    // The host is not quoted back: a URL written wrongly may carry a password there.
    if (!m) return 'expected host[:port][,host[:port]…] after the credentials of a postgres:// URL';
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
  const given = new Set(p.query.map(keyOf));
  for (const [key, value] of Object.entries(defaults)) if (!given.has(key)) p.query.push(`${key}=${value}`);
  return format(p);
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  const p = parts(url);
  if (!p) return 'postgres://(unparsable URL)';
  p.query = p.query.map(redactPair);
  // An '@' after the credentials (a password holding '/' or '@'?, which libpq cannot read either): all before
  // the last '@' is hidden, and the query masked as always.
  if (/@/.test(p.hosts + p.path)) {
    const after = url.slice(url.lastIndexOf('@') + 1).split('?')[0] ?? '';
    return `${p.scheme}***@${after}${p.query.length > 0 ? `?${p.query.join('&')}` : ''}`;
  }
  if (p.password) p.password = '***';
  return format(p);
}

/** A query pair as shown: a password's value masked (whatever the key's case), a pair that cannot be read hidden. */
function redactPair(pair: string): string {
  const key = keyOf(pair);
  if (key === undefined) return '***';
  return /^(ssl)?password$/i.test(key) ? `${key}=***` : pair;
}

/**
 * Text from libpq made safe to show: it quotes the URL, or a token of it, when it cannot read it. The URL, the
 * password (as written and decoded) and anything libpq quotes from the URL are removed.
 */
export function redactLibpqMessage(message: string, url: string): string {
  if (/\bURI\b|percent-encoded|invalid .* parameter|missing "="/i.test(message)) {
    return 'libpq cannot read this postgres:// URL (check its %XX escapes, brackets and parameters)';
  }
  let text = message.split(url).join(redactUrl(url));
  const p = parts(url);
  const secrets = [
    p?.password,
    ...(p?.query ?? []).filter((q) => /^(ssl)?password=/i.test(q)).map((q) => q.slice(q.indexOf('=') + 1)),
  ];
  for (const secret of secrets) {
    if (!secret) continue;
    let decoded = secret;
    try {
      decoded = decodeURIComponent(secret);
    } catch {}
    for (const s of new Set([secret, decoded])) if (s.length > 0) text = text.split(s).join('***');
  }
  return text;
}
