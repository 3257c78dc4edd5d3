/**
 * The command side every enrolled daemon (gateway, proxy) runs the same way around its own store: where its
 * database is, `enroll` (credential → CA client → the state directory's lock → the enrollment saved), `renew`
 * and `status` beside a running serve, and serve's opening of the state directory. Each daemon passes in what is
 * its own: how to open its store, how to enroll and renew, what its status shows.
 */
import { join } from 'node:path';
import { CaClient } from '../protocol/ca-client.js';
import { SystemdNotifier } from '../runtime/systemd.js';
import { stateDirectory } from '../store/db.js';
import type { EnrollmentCredential } from './credentials.js';
import type { ComponentRole } from './keys.js';
import { holdStateDirectory } from './lock.js';
import { type RenewResult, renewStoredEnrollment, requireEnrolled } from './renew.js';
import { collectStatus, type StatusReport, type StoredStatus } from './status.js';

/** `<state directory>/<role>.db`: the state directory is state_directory, else $STATE_DIRECTORY, else /var/lib. */
export function enrolledDatabasePath(
  role: ComponentRole,
  override: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string {
  return join(stateDirectory(role, { override, env }), `${role}.db`);
}

/** What renewal reads of a stored enrollment. */
interface RenewableState {
  caUrl: string;
  caFingerprint: string;
  tlsChainPem: string;
  notAfter: string;
}

/** What renewal does with a daemon's store. */
interface RenewableStore<S> {
  load(): S;
  saveEnrollment(state: S): void;
  caClient(state: S): CaClient;
  db: { name: string };
}

/** A daemon's store, as these commands use it. */
interface ClosableStore {
  close(): void;
}

/** Runs `fn` on a store opened for it, closed however `fn` ends. */
function using<S extends ClosableStore, T>(store: S, fn: (store: S) => T): T {
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

/**
 * Enrolls with the CA and stores the result, under the state directory's lock (taken before the CA is asked:
 * a token is spent once, and never under a running serve). A machine identity logs in first; a one-time token
 * goes to `enroll`. Read the credential (refusing a loose secret file) before calling this.
 */
export async function enrollAndSave<S>(o: {
  role: ComponentRole;
  path: string;
  caUrl: string;
  caFingerprint: string;
  credential: EnrollmentCredential;
  enroll: (client: CaClient, enrollmentToken: string | undefined) => Promise<S>;
  open: (path: string) => ClosableStore & { saveEnrollment(state: S): void };
}): Promise<S> {
  const lock = holdStateDirectory(o.path, o.role, 'enroll');
  try {
    let client = new CaClient({ url: o.caUrl, fingerprint: o.caFingerprint });
    const credential = o.credential;
    if (credential.kind === 'login') {
      const { clientId, clientSecret } = credential;
      client = (await client.loginAs({ clientId, clientSecret })).client;
    }
    const state = await o.enroll(client, credential.kind === 'token' ? credential.token : undefined);
    using(o.open(o.path), (store) => store.saveEnrollment(state));
    return state;
  } finally {
    lock.release();
  }
}

/** `renew`: the stored certificates renewed now (also beside a running serve, which picks them up). */
export async function renewEnrolled<S extends RenewableState>(
  role: ComponentRole,
  path: string,
  open: (path: string) => ClosableStore & RenewableStore<S>,
  renew: (client: CaClient, current: S) => Promise<S>,
): Promise<RenewResult> {
  requireEnrolled(path, role);
  const store = open(path);
  try {
    return await renewStoredEnrollment(store, renew);
  } finally {
    store.close();
  }
}

/** `status`: what the state directory and a running serve say (reads only, beside serve). */
export function enrolledStatus<S extends ClosableStore>(
  role: ComponentRole,
  path: string,
  open: (path: string) => S,
  stored: (store: S) => StoredStatus,
  counts: Record<string, string>,
): Promise<StatusReport> {
  requireEnrolled(path, role);
  return collectStatus({ role, databasePath: path, stored: () => using(open(path), stored), counts });
}

/**
 * Serve's start on the state directory: refused when not enrolled, held for the process's life (the kernel
 * frees the lock however serve ends; refused if another holds it), the store opened.
 */
export function openForServe<S>(
  role: ComponentRole,
  path: string,
  open: (path: string) => S,
): { notifier: SystemdNotifier; lock: ReturnType<typeof holdStateDirectory>; store: S } {
  const notifier = new SystemdNotifier();
  notifier.status('opening state');
  requireEnrolled(path, role);
  const lock = holdStateDirectory(path, role, 'serve');
  return { notifier, lock, store: open(path) };
}

/**
 * A daemon's `renew` and `status` from what is its own: how its store opens, how it renews, what its status
 * shows of the stored enrollment and which metric series it counts.
 */
export function renewAndStatus<S extends RenewableState, St extends ClosableStore & RenewableStore<S>>(o: {
  role: ComponentRole;
  open: (path: string) => St;
  renew: (client: CaClient, current: S) => Promise<S>;
  stored: (store: St) => StoredStatus;
  counts: Record<string, string>;
}): { renew(path: string): Promise<RenewResult>; status(path: string): Promise<StatusReport> } {
  return {
    renew: (path) => renewEnrolled(o.role, path, o.open, o.renew),
    status: (path) => enrolledStatus(o.role, path, o.open, o.stored, o.counts),
  };
}
