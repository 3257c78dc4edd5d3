/**
 * `serve` and `enroll` of the gateway and the proxy hold their state directory (lib/store/lock.ts) so two never
 * share one: a second serve, or an enroll under a running serve, is refused naming the pid that holds it.
 * `renew` and `status` take no lock: they work beside a running serve (SQLite transactions, generation watch).
 */
import { dirname } from 'node:path';
import { prepareStateDirectory } from '../store/db.js';
import { StateLock } from '../store/lock.js';
import type { ComponentRole } from './keys.js';

export function holdStateDirectory(databasePath: string, role: ComponentRole, command: 'serve' | 'enroll'): StateLock {
  const dir = dirname(databasePath);
  // enroll may make the directory; serve has checked it is enrolled (requireEnrolled) and creates nothing.
  if (command === 'enroll') prepareStateDirectory(dir);
  return StateLock.acquire(dir, `infisical-${role} ${command}`);
}
