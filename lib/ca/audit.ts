/**
 * The CA's audit trail: every login, issuance, denial and revocation, as a row in SQLite and a JSON log line.
 * `insert` writes the row only, so an issuance can commit its certificates and its audit row in one
 * transaction; `log` writes the line after the commit, so the log never tells of something that rolled back.
 */
import type { ErrorCode } from '../errors/codes.js';
import { type Audit, createAudit, type Logger } from '../runtime/log.js';
import type { CaStore } from './store.js';

export interface AuditEvent {
  /** Who acted: "admin", "org:acme/identity:alice", "enrollment-token", a peer URI, or a client id at login. */
  actor: string;
  /** What it acted on: an identity URI, a serial, an org id. */
  subject: string;
  /** What it tried, e.g. "login", "gateway.enroll", "grant.issue", "revoke.gateway". */
  action: string;
  outcome: 'ok' | 'refused';
  code?: ErrorCode | null;
  reason?: string | null;
  orgId?: string | null;
  /** Network source (an IP address) when known. */
  source?: string | null;
}

export class AuditTrail {
  readonly #store: CaStore;
  readonly #now: () => Date;
  readonly #line: Audit | undefined;

  constructor(store: CaStore, now: () => Date, logger?: Logger) {
    this.#store = store;
    this.#now = now;
    this.#line = logger ? createAudit(logger, { now }) : undefined;
  }

  /** The row only; call inside the transaction whose outcome it describes. Returns its seq. */
  insert(e: AuditEvent): number {
    return this.#store.audit.insert({
      at: this.#now().getTime(),
      actor: e.actor,
      subject: e.subject,
      action: e.action,
      outcome: e.outcome,
      code: e.code ?? null,
      reason: e.reason ?? null,
      orgId: e.orgId ?? null,
      source: e.source ?? null,
    });
  }

  /** The JSON log line only; call after the commit. */
  log(e: AuditEvent): void {
    if (!this.#line) return;
    this.#line(`ca.${e.action}`, {
      actor: e.actor,
      subject: e.subject,
      outcome: e.outcome,
      ...(e.code ? { code: e.code } : {}),
      ...(e.reason ? { reason: e.reason } : {}),
      ...(e.orgId ? { orgId: e.orgId } : {}),
      ...(e.source ? { source: e.source } : {}),
    });
  }

  /** Row and line, for events outside any transaction. */
  record(e: AuditEvent): void {
    this.insert(e);
    this.log(e);
  }
}
