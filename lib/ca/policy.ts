/**
 * Access policy: the rule table that decides whether an identity may get a grant for (gateway, target, mode).
 * Deny by default. Pure: rules and request in, verdict out.
 *
 * A rule reads: "<subject> may reach <targets> through <gateways> in <modes>".
 *   subject  identity:<identityId> or group:<name>
 *   gateways gateway ids, or "*" for every gateway of the org
 *   targets  "host:ports" patterns: host is a DNS name, "*.suffix", an IP, a CIDR, or "*";
 *            ports is "5432", "8000-8100" or "*"; "name:<target name>" matches a named target
 *   modes    tcp, http, ping, health
 *
 * IP targets and IP/CIDR patterns are read by lib/protocol/address.ts, as the gateway reads its allowlist: an
 * IPv4-mapped or -compatible target is the IPv4 address and meets IPv4 patterns only (::/0 admits no IPv4), and
 * a zoned target (fe80::1%eth0) is refused outright.
 */
import { isIP } from 'node:net';
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { GRANT_MODES, type GrantMode, type GrantTarget } from '../pki/grant.js';
import { isValidId } from '../pki/identity.js';
import { cidrContains, readAddress, readCidr, sameAddress } from '../protocol/address.js';
import type { PolicyRuleBody } from '../protocol/api.js';

/** A rule as stored and as the API shows it. */
export type PolicyRule = PolicyRuleBody;

export interface AccessRequest {
  orgId: string;
  identityId: string;
  groups: string[];
  gatewayId: string;
  target: GrantTarget;
  mode: GrantMode;
}

/** `identity:<id>` or `group:<id>`. */
const isSubject = (s: string): boolean => /^(identity|group):/.test(s) && isValidId(s.slice(s.indexOf(':') + 1));
/** A gateway id, or `*` for every gateway. */
const isGatewayPattern = (g: string): boolean => g === '*' || isValidId(g);

/** Checks a rule's syntax before it is stored; the refusal names the bad part. */
export function validateRule(rule: PolicyRule): Verdict<PolicyRule> {
  if (!isSubject(rule.subject)) return refuse('E_REQUEST_INVALID', `subject "${rule.subject}"`);
  if (rule.gateways.length === 0) return refuse('E_REQUEST_INVALID', 'a rule names at least one gateway or "*"');
  for (const g of rule.gateways) if (!isGatewayPattern(g)) return refuse('E_REQUEST_INVALID', `gateway "${g}"`);
  if (rule.targets.length === 0) return refuse('E_REQUEST_INVALID', 'a rule names at least one target');
  for (const t of rule.targets) {
    if (parseTargetPattern(t) === null) return refuse('E_REQUEST_INVALID', `target pattern "${t}"`);
  }
  if (rule.modes.length === 0 || !rule.modes.every((m) => GRANT_MODES.includes(m))) {
    return refuse('E_REQUEST_INVALID', `modes ${rule.modes.join(',')}`);
  }
  return accept(rule);
}

/** The first rule that allows the request, or E_POLICY_DENIED. */
export function decideAccess(rules: readonly PolicyRule[], req: AccessRequest): Verdict<PolicyRule> {
  if (!('name' in req.target) && readAddress(req.target.host) === 'zoned') {
    return refuse(
      'E_POLICY_DENIED',
      `target ${describeTarget(req.target)} carries a zone (%...), which no policy rule can judge; use a target without a zone`,
    );
  }
  const subjects = new Set([`identity:${req.identityId}`, ...req.groups.map((g) => `group:${g}`)]);
  for (const rule of rules) {
    if (rule.orgId !== req.orgId) continue;
    if (!subjects.has(rule.subject)) continue;
    if (!rule.gateways.includes('*') && !rule.gateways.includes(req.gatewayId)) continue;
    if (!rule.modes.includes(req.mode)) continue;
    if (rule.targets.some((t) => targetMatches(t, req.target))) return accept(rule);
  }
  return refuse(
    'E_POLICY_DENIED',
    `no rule lets identity ${req.identityId} reach ${describeTarget(req.target)} through gateway ${req.gatewayId} in ${req.mode} mode`,
  );
}

export function describeTarget(t: GrantTarget): string {
  return 'name' in t ? `name:${t.name}` : `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

type HostMatcher = (host: string) => boolean;
type TargetPattern = { kind: 'name'; name: string } | { kind: 'host'; host: HostMatcher; lo: number; hi: number };

function parseTargetPattern(pattern: string): TargetPattern | null {
  if (pattern.startsWith('name:')) {
    const name = pattern.slice(5);
    return isValidId(name) ? { kind: 'name', name } : null;
  }
  const cut = pattern.lastIndexOf(':');
  if (cut <= 0) return null;
  const hostPart = pattern.slice(0, cut).replace(/^\[(.*)\]$/, '$1');
  const ports = parsePorts(pattern.slice(cut + 1));
  const host = parseHostPattern(hostPart);
  if (!ports || !host) return null;
  return { kind: 'host', host, lo: ports[0], hi: ports[1] };
}

function parsePorts(s: string): [number, number] | null {
  if (s === '*') return [1, 65535];
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  if (!m) return null;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  return lo >= 1 && hi <= 65535 && lo <= hi ? [lo, hi] : null;
}

function parseHostPattern(s: string): HostMatcher | null {
  if (s === '*') return () => true;
  const slash = s.indexOf('/');
  if (slash > 0) {
    // A mapped CIDR with prefix > 96 is an IPv4 rule; any other IPv6 CIDR never matches an IPv4 target.
    const cidr = readCidr(s);
    if (typeof cidr === 'string') return null;
    return (host) => {
      const addr = readAddress(host);
      return typeof addr !== 'string' && cidrContains(cidr, addr);
    };
  }
  if (isIP(s) !== 0) {
    const want = readAddress(s);
    if (typeof want === 'string') return null;
    return (host) => {
      const addr = readAddress(host);
      return typeof addr !== 'string' && sameAddress(want, addr);
    };
  }
  if (s.startsWith('*.')) {
    const suffix = s.slice(1).toLowerCase();
    return isDnsName(s.slice(2)) ? (host) => host.toLowerCase().endsWith(suffix) : null;
  }
  return isDnsName(s) ? (host) => host.toLowerCase() === s.toLowerCase() : null;
}

function isDnsName(s: string): boolean {
  return s.length <= 253 && s.split('.').every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

function targetMatches(pattern: string, target: GrantTarget): boolean {
  const p = parseTargetPattern(pattern);
  if (!p) return false;
  if (p.kind === 'name') return 'name' in target && target.name === p.name;
  if ('name' in target) return false;
  return target.port >= p.lo && target.port <= p.hi && p.host(target.host);
}
