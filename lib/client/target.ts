/**
 * What a person types on the command line, as the grant's target and the local listen address. Pure and
 * strict: a bad value is refused with E_CONFIG_INVALID and says what was expected.
 */
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { type GrantTarget, isValidHost } from '../pki/grant.js';
import { isValidId } from '../pki/identity.js';
import { parseAddress } from './relay-io.js';

/** `HOST:PORT`, `[V6]:PORT`, or `name:NAME` (a named target of the gateway). */
export function parseTcpTarget(text: string): Verdict<GrantTarget> {
  if (text.startsWith('name:')) {
    const name = text.slice(5);
    return isValidId(name) ? accept({ name }) : refuse('E_CONFIG_INVALID', `bad target name ${JSON.stringify(name)}`);
  }
  const addr = parseAddress(text);
  if (!addr || !isValidHost(addr.host)) {
    return refuse('E_CONFIG_INVALID', `target ${JSON.stringify(text)}: expected HOST:PORT or name:NAME`);
  }
  return accept({ host: addr.host, port: addr.port });
}

/** `http(s)://HOST[:PORT][/…]`: the grant names the host and port; the path is the caller's business. */
export function parseHttpTarget(text: string): Verdict<GrantTarget & { host: string; port: number; url: URL }> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return refuse('E_CONFIG_INVALID', `target ${JSON.stringify(text)}: expected a URL like http://host:port`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return refuse('E_CONFIG_INVALID', `target ${JSON.stringify(text)}: only http:// and https:// URLs`);
  }
  if (url.username || url.password) return refuse('E_CONFIG_INVALID', 'target URL must not carry credentials');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!isValidHost(host)) return refuse('E_CONFIG_INVALID', `target host ${JSON.stringify(host)} is not valid`);
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return accept({ host, port, url });
}

/** `PORT`, `HOST:PORT` or `[V6]:PORT`; a bare port listens on 127.0.0.1. Port 0 picks a free port. */
export function parseListen(text: string): Verdict<{ host: string; port: number }> {
  if (/^\d{1,5}$/.test(text) && Number(text) <= 65535) return accept({ host: '127.0.0.1', port: Number(text) });
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) return refuse('E_CONFIG_INVALID', `listen ${JSON.stringify(text)}: expected [HOST:]PORT`);
  return accept({ host: (m[1] ?? m[2])!, port });
}

/** A target for humans: `10.0.0.5:5432`, `[fd00::1]:5432` or `name:pg`. */
export function showTarget(t: GrantTarget): string {
  if ('name' in t) return `name:${t.name}`;
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}
