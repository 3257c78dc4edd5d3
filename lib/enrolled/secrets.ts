/**
 * The private keys of an enrolled component, sealed before they reach its state database (AES-256-GCM, lib/store
 * sealed.ts) under a key that lives outside it: `sealing.key` (0600) beside the database, or the systemd
 * credential `sealing-key`. A copied database alone then holds no usable key, as with the CA's keys.
 *
 * Stored form: "sealed:v1:" + base64 of the sealed value, in the same TEXT columns that held plain PEM before;
 * a state directory written by an older version is sealed in place on its first open (one transaction).
 */
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { loadSealingKey, Sealer, SealingKey } from '../store/sealed.js';
import type { ComponentRole } from './keys.js';

const PREFIX = 'sealed:v1:';

export type SecretKind = 'tls-private-key' | 'ssh-private-key';

export class StateSecrets {
  readonly #sealer: Sealer;
  readonly #role: ComponentRole;

  constructor(sealer: Sealer, role: ComponentRole) {
    this.#sealer = sealer;
    this.#role = role;
  }

  /** The sealing key beside a database file (created 0600 on first use); an in-memory key for ':memory:'. */
  static beside(
    databasePath: string,
    role: ComponentRole,
    env: Readonly<Record<string, string | undefined>> = process.env,
  ): StateSecrets {
    if (databasePath === ':memory:') return StateSecrets.ephemeral(role);
    const key = loadSealingKey({ keyFile: join(dirname(databasePath), 'sealing.key'), env });
    return new StateSecrets(new Sealer(key), role);
  }

  /** A key that lives as long as the process (in-memory databases, tests). */
  static ephemeral(role: ComponentRole): StateSecrets {
    return new StateSecrets(new Sealer(new SealingKey(randomBytes(32), 'in-memory')), role);
  }

  /** Where the key came from, for logs ("file /var/lib/…/sealing.key"). */
  get source(): string {
    return this.#sealer.current.source;
  }

  seal(plaintext: string, kind: SecretKind): string {
    return PREFIX + this.#sealer.seal(plaintext, this.#context(kind)).toString('base64');
  }

  /** Opens a stored value; E_SEALED_TAMPERED / E_SEALED_KEY when it was altered or sealed under another key. */
  open(stored: string, kind: SecretKind): string {
    if (!StateSecrets.isSealed(stored)) return stored; // written before sealing; sealed at the next open
    return this.#sealer.openText(Buffer.from(stored.slice(PREFIX.length), 'base64'), this.#context(kind));
  }

  static isSealed(stored: string): boolean {
    return stored.startsWith(PREFIX);
  }

  #context(kind: SecretKind): string {
    return `${this.#role}:${kind}`;
  }
}
