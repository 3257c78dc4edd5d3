/** Every fuzz target, in the order `make fuzz` runs them. */
import type { AnyTarget } from '../target.js';
import { CONFIG_TARGETS } from './config.js';
import { GRANT_TARGETS } from './grant.js';
import { PKI_TARGETS } from './pki.js';
import { PROTOCOL_TARGETS } from './protocol.js';
import { SSH_TARGETS } from './ssh.js';

export const TARGETS: readonly AnyTarget[] = [
  ...SSH_TARGETS,
  ...PKI_TARGETS,
  ...GRANT_TARGETS,
  ...CONFIG_TARGETS,
  ...PROTOCOL_TARGETS,
];

export function targetNamed(name: string): AnyTarget {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`no fuzz target ${name}; known: ${TARGETS.map((x) => x.name).join(', ')}`);
  return t;
}
