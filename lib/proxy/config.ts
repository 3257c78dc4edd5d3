/**
 * The proxy daemon's configuration keys (flags > environment INFISICAL_PROXY_* > /etc/infisical/proxy.conf >
 * defaults). Declared once: the loader, --help and the sample config read this. `enroll` uses the enrollment
 * keys; `serve` runs from the state database and reads only listeners, limits and runtime keys here.
 */
import { caKeys, enrolledKeys, enrollmentTokenKeys } from '../enrolled/config-keys.js';
import { defineSchema, durationRange, each, hostPort, intRange, keys, oneOf } from '../runtime/config-schema.js';
import { runtimeKeys } from '../runtime/runtime-keys.js';

const hostnameList = each((v) => (/^[A-Za-z0-9.:-]{1,253}$/.test(v) ? undefined : 'expected a host name or address'));

/**
 * Clock skew allowed on an outer certificate's notAfter at the edge (config `cert_skew`). Small on purpose:
 * the CA issues short-lived certs and the proxy's clock is NTP-synced; a minute of grace was a minute of access
 * after expiry. Declared here, not in admission.ts: this schema module imports nothing that reaches an npm
 * package (packaging bundles it alone to render the sample config).
 */
export const DEFAULT_CERT_SKEW_MS = 5_000;

export const proxyConfigSchema = defineSchema(
  'proxy',
  'proxy daemon: holds gateways’ SSH reverse tunnels and relays platforms’ mTLS streams into them, blind to their content',
  {
    // enrollment
    ...caKeys(),
    ...enrollmentTokenKeys('proxy'),
    admin_client_id: keys.string({
      reload: 'command',
      optional: true,
      description: 'Client id of the instance admin (instance proxy) or an org-admin (org proxy) for `enroll`.',
    }),
    client_secret_file: keys.path({
      reload: 'command',
      optional: true,
      description: 'File holding that client secret.',
    }),
    scope: keys.string({
      reload: 'command',
      optional: true,
      placeholder: 'instance|org',
      description: 'instance: shared by every org (trusts the instance CAs); org: one org’s own proxy (its CAs only).',
      validate: oneOf('instance', 'org'),
    }),
    org_id: keys.string({
      reload: 'command',
      flag: 'org',
      optional: true,
      placeholder: 'id',
      description: 'Org of an org proxy.',
    }),
    proxy_id: keys.string({
      reload: 'command',
      optional: true,
      placeholder: 'id',
      description: "This proxy's id.",
    }),
    hostnames: keys.list({
      reload: 'command',
      flag: 'hostname',
      default: [],
      placeholder: 'name,...',
      description: 'Names and addresses gateways and platforms dial (host cert principals, TLS cert SANs).',
      validate: hostnameList,
    }),
    ssh_address: keys.string({
      reload: 'command',
      optional: true,
      placeholder: 'host:port',
      description: 'SSH address advertised to gateways (default: first hostname and the ssh_listen port).',
      validate: hostPort,
    }),
    tls_address: keys.string({
      reload: 'command',
      optional: true,
      placeholder: 'host:port',
      description: 'TLS address advertised to platforms (default: first hostname and the tls_listen port).',
      validate: hostPort,
    }),
    // listeners
    ssh_listen: keys.string({
      reload: 'restart',
      optional: true,
      placeholder: 'host:port',
      description:
        'Address gateways connect to (SSH). `enroll` stores it (default 0.0.0.0:2222); set here it overrides.',
      validate: hostPort,
    }),
    tls_listen: keys.string({
      reload: 'restart',
      optional: true,
      placeholder: 'host:port',
      description:
        'Address platforms connect to (mTLS). `enroll` stores it (default 0.0.0.0:8443); set here it overrides.',
      validate: hostPort,
    }),
    // limits (docs/security.md says what each answers and why its default is what it is)
    handshake_timeout: keys.duration({
      reload: 'live',
      default: 10_000,
      description:
        'Deadline from TCP accept to an authenticated SSH login, or to an admitted platform route (TLS handshake and decision); also the wait for a gateway to open a channel. A deadline, not an idle timer: a peer sending a byte at a time is cut too (E_TIMEOUT).',
      validate: durationRange(100, 300_000),
    }),
    max_unauthenticated_per_source: keys.int({
      reload: 'live',
      default: 512,
      description:
        'Connections one source (an IPv4 address, an IPv6 /64) may have in their handshake at once, on each listener; more are dropped at accept (E_LIMIT). Authenticated ones do not count: size it for how many gateways behind one NAT address reconnect AT ONCE.',
      validate: intRange(1, 1_000_000),
    }),
    forward_timeout: keys.duration({
      reload: 'live',
      default: 15_000,
      description:
        'A gateway that logged in must hold a granted tcpip-forward within this time, or its SSH connection is closed (E_TIMEOUT).',
      validate: durationRange(100, 300_000),
    }),
    max_tunnels_per_org: keys.int({
      reload: 'live',
      default: 2_000,
      description:
        'Instance proxy: tunnels one org may hold here at once; more forwards are refused (E_QUOTA_EXCEEDED). Not applied on an org proxy.',
      validate: intRange(1, 1_000_000),
    }),
    max_streams_per_org: keys.int({
      reload: 'live',
      default: 2_500,
      description:
        'Instance proxy: concurrent streams one org may have here (E_QUOTA_EXCEEDED beyond). Not applied on an org proxy.',
      validate: intRange(1, 1_000_000),
    }),
    idle_timeout: keys.duration({
      reload: 'live',
      default: 15 * 60_000,
      description: 'A stream with no byte either way for this long is closed.',
      validate: durationRange(1000, 7 * 86_400_000),
    }),
    max_connections: keys.int({
      reload: 'live',
      default: 10_000,
      description: 'Concurrent connections per listener; more are dropped at accept (E_LIMIT).',
      validate: intRange(1, 1_000_000),
    }),
    max_streams_per_gateway: keys.int({
      reload: 'live',
      default: 1_000,
      description: 'Concurrent streams to one gateway over all its tunnels (E_LIMIT beyond).',
      validate: intRange(1, 1_000_000),
    }),
    max_auth_attempts: keys.int({
      reload: 'live',
      default: 6,
      description: 'Refused SSH authentication attempts before the connection is dropped.',
      validate: intRange(1, 100),
    }),
    cert_skew: keys.duration({
      reload: 'live',
      default: DEFAULT_CERT_SKEW_MS,
      description:
        'Clock skew allowed past a platform certificate’s notAfter: accepted iff now <= notAfter + cert_skew; a live stream is cut then (0: exact).',
      validate: durationRange(0, 60_000),
    }),
    ...enrolledKeys(),
    ...runtimeKeys({ opsListen: '127.0.0.1:9473' }),
  },
);

export type ProxyConfigSchema = typeof proxyConfigSchema;
