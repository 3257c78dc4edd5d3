/**
 * The CA daemon's configuration keys (flags > environment > /etc/infisical/ca.conf > defaults). Declared once:
 * the loader, --help and the sample config read this.
 */
import { defineSchema, durationRange, hostPort, keys, oneOf } from '../runtime/config-schema.js';
import { runtimeKeys } from '../runtime/runtime-keys.js';

export const caConfigSchema = defineSchema('ca', 'certificate authority and control plane of the gateway suite', {
  listen: keys.string({
    default: '127.0.0.1:8443',
    placeholder: 'host:port',
    description:
      'Address of the HTTPS API (clients pin its certificate by SHA-256 fingerprint). Loopback by default: set ' +
      '0.0.0.0:8443 (or one address of this host) when proxies and gateways on other hosts must reach it.',
    validate: hostPort,
  }),
  tls_min_version: keys.string({
    default: '1.3',
    placeholder: '1.2|1.3',
    description:
      'Oldest TLS version the API accepts. 1.3: TLS 1.3 only. 1.2 also admits TLS 1.2 clients, with forward-secret ' +
      'AEAD ciphers only (ECDHE with AES-GCM or ChaCha20-Poly1305). The suite’s own programs speak TLS 1.3.',
    validate: oneOf('1.2', '1.3'),
  }),
  trust_domain: keys.string({
    optional: true,
    placeholder: 'name',
    description: 'SPIFFE trust domain, fixed by `init` (default infisical.local); later runs must agree with it.',
  }),
  api_names: keys.list({
    default: ['localhost', '127.0.0.1'],
    flag: 'api-name',
    description: 'DNS names and IP addresses put in the API server certificate by `init` and `api-cert`.',
  }),
  token_ttl: keys.duration({
    default: 15 * 60_000,
    description: 'Lifetime of access tokens issued at login.',
    validate: durationRange(60_000, 24 * 3_600_000),
  }),
  grant_ttl: keys.duration({
    default: 5 * 60_000,
    description: 'Lifetime of access grants when a request names none.',
    validate: durationRange(10_000, 3_600_000),
  }),
  supersede_grace: keys.duration({
    default: 120_000,
    description:
      'After a gateway or proxy renews, how long its previous certificates stay valid unless the new ones are used ' +
      'first; then they are revoked in the feed, so a copied state directory stops working.',
    validate: durationRange(0, 24 * 3_600_000),
  }),
  ...runtimeKeys({ opsListen: '127.0.0.1:9471' }),
});
