/**
 * The gateway's own allowlist: which targets inside the private network a grant may reach. Deny by default:
 * a target passes only when its port is listed AND its address is inside a listed CIDR, and a host name
 * must also be listed by name. A name is resolved once (by the caller's injected resolver) and the address
 * it resolved to is checked and then dialled, so DNS cannot swap the address between check and dial.
 *
 * Every refusal names the config key an operator would change (E_TARGET_NOT_ALLOWED).
 *
 * Config (lib/gateway/config.ts): allow_cidrs, allow_hosts ("db.internal", "*.svc.internal"), allow_ports
 * ("5432", "8000-8099"), targets ("name=host:port": named targets a grant may use instead of host and port).
 */
import { isIP } from 'node:net';
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { type GrantTarget, isValidHost } from '../pki/grant.js';
import { isValidId } from '../pki/identity.js';
import { cidrContains, type IpCidr, readAddress, readCidr } from '../protocol/address.js';

export interface AllowlistConfig {
  cidrs: readonly string[];
  hosts: readonly string[];
  ports: readonly string[];
  /** "name=host:port" entries. */
  targets: readonly string[];
}

export interface Allowlist {
  /** Mapped entries already converted to IPv4 (lib/protocol/address.ts has the rule). */
  readonly cidrs: readonly IpCidr[];
  readonly cidrText: readonly string[];
  readonly hosts: readonly string[];
  readonly ports: readonly (readonly [number, number])[];
  readonly targets: ReadonlyMap<string, { host: string; port: number }>;
}

/** What the gateway dials: the checked address, with the name it came from (for logs and TLS SNI). */
export interface DialTarget {
  host: string;
  port: number;
  address: string;
  /** The named target, when the grant used one. */
  name?: string;
}

/** Parses the config lists; every bad entry is reported at once (E_CONFIG_INVALID). */
export function parseAllowlist(config: AllowlistConfig): Verdict<Allowlist> {
  const problems: string[] = [];
  const cidrs: IpCidr[] = [];
  for (const entry of config.cidrs) {
    const parsed = readCidr(entry);
    if (parsed === 'zoned') problems.push(`allow_cidrs: "${entry}" carries a zone; write the address without %zone`);
    else if (parsed === 'not-ip') problems.push(`allow_cidrs: "${entry}" is not an address/prefix`);
    else cidrs.push(parsed);
  }
  const hosts: string[] = [];
  for (const entry of config.hosts) {
    const h = entry.toLowerCase();
    const bare = h.startsWith('*.') ? h.slice(2) : h;
    if (!isValidHost(bare) || isIP(bare) !== 0) problems.push(`allow_hosts: "${entry}" is not a host name`);
    else hosts.push(h);
  }
  const ports: [number, number][] = [];
  for (const entry of config.ports) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(entry);
    const lo = m ? Number(m[1]) : 0;
    const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
    if (!m || lo < 1 || hi > 65535 || hi < lo) problems.push(`allow_ports: "${entry}" is not a port or range`);
    else ports.push([lo, hi]);
  }
  const targets = new Map<string, { host: string; port: number }>();
  for (const entry of config.targets) {
    const m = /^([^=\s]+)=(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(entry);
    const host = m ? (m[2] ?? m[3])! : '';
    const port = m ? Number(m[4]) : 0;
    if (!m || !isValidId(m[1]) || !isValidHost(host) || port < 1 || port > 65535) {
      problems.push(`targets: "${entry}" is not name=host:port`);
    } else if (targets.has(m[1]!)) problems.push(`targets: name "${m[1]}" is listed twice`);
    else targets.set(m[1]!, { host, port });
  }
  if (problems.length > 0) return refuse('E_CONFIG_INVALID', problems.join('; '));
  return accept({ cidrs, cidrText: [...config.cidrs], hosts, ports, targets });
}

/**
 * First step, before any resolution: the named target exists, the port is allowed, and a host name is
 * listed. Returns the host and port to resolve.
 */
export function checkTarget(
  list: Allowlist,
  target: GrantTarget,
): Verdict<{ host: string; port: number; name?: string }> {
  let host: string;
  let port: number;
  let name: string | undefined;
  if ('name' in target) {
    const named = list.targets.get(target.name);
    if (!named) {
      return notAllowed(`named target "${target.name}" is not defined; add "${target.name}=host:port" to targets`);
    }
    ({ host, port } = named);
    name = target.name;
  } else {
    ({ host, port } = target);
  }
  if (!list.ports.some(([lo, hi]) => port >= lo && port <= hi)) {
    return notAllowed(`port ${port} is not allowed; add ${port} to allow_ports`);
  }
  if (isIP(host) === 0 && !hostListed(list.hosts, host)) {
    return notAllowed(`host "${host}" is not allowed; add it to allow_hosts`);
  }
  return accept(name === undefined ? { host, port } : { host, port, name });
}

/** Second step: the address the host resolved to (or the literal) must be inside allow_cidrs. */
export function checkAddress(
  list: Allowlist,
  checked: { host: string; port: number; name?: string },
  address: string,
): Verdict<DialTarget> {
  // A mapped or compatible address is judged, and dialled, as the IPv4 address it carries.
  const read = readAddress(address);
  if (read === 'not-ip') return notAllowed(`"${address}" is not an IP address`);
  if (read === 'zoned') {
    return notAllowed(
      `address ${address} carries a zone (%...), which no allow_cidrs rule can judge; use a target without a zone`,
    );
  }
  const addr = read.text;
  if (!list.cidrs.some((c) => cidrContains(c, read))) {
    const via = address === checked.host ? '' : ` (resolved from "${checked.host}")`;
    const shown = addr === address ? addr : `${addr} (written ${address})`;
    return notAllowed(
      `address ${shown}${via} is not allowed; add ${addr}/${read.family === 4 ? 32 : 128} to allow_cidrs`,
    );
  }
  return accept({ ...checked, address: addr });
}

/** Looks up a name once; the first address is the one checked and dialled. */
export type Resolver = (host: string) => Promise<string[]>;

/** checkTarget, one resolution, checkAddress. A resolution failure is E_TARGET_UNREACHABLE. */
export async function resolveTarget(
  list: Allowlist,
  target: GrantTarget,
  resolve: Resolver,
): Promise<Verdict<DialTarget>> {
  const first = checkTarget(list, target);
  if (!first.ok) return first;
  if (isIP(first.value.host) !== 0) return checkAddress(list, first.value, first.value.host);
  let addresses: string[];
  try {
    addresses = await resolve(first.value.host);
  } catch (err) {
    return refuse('E_TARGET_UNREACHABLE', `cannot resolve "${first.value.host}": ${(err as Error).message}`);
  }
  const address = addresses[0];
  if (address === undefined) return refuse('E_TARGET_UNREACHABLE', `"${first.value.host}" resolved to no address`);
  return checkAddress(list, first.value, address);
}

function hostListed(hosts: readonly string[], host: string): boolean {
  const h = host.toLowerCase();
  return hosts.some((entry) =>
    entry.startsWith('*.') ? h.endsWith(entry.slice(1)) && h.length > entry.length - 1 : entry === h,
  );
}

function notAllowed(reason: string): Verdict<never> {
  return refuse('E_TARGET_NOT_ALLOWED', reason);
}
