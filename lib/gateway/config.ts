/**
 * The gateway daemon's configuration keys (flags > environment INFISICAL_GATEWAY_* > /etc/infisical/gateway.conf
 * > defaults). Declared once: the loader, --help and the sample config read this.
 */
import { caKeys, enrolledKeys, enrollmentTokenKeys } from '../enrolled/config-keys.js';
import { defineSchema, durationRange, intRange, keys } from '../runtime/config-schema.js';
import { runtimeKeys } from '../runtime/runtime-keys.js';

export const gatewayConfigSchema = defineSchema(
  'gateway',
  'gateway daemon: keeps SSH reverse tunnels to the proxies and serves end-to-end mTLS streams to private targets',
  {
    // enrollment (serve reads everything else from the state database)
    ...caKeys(),
    org_id: keys.string({
      reload: 'command',
      flag: 'org',
      optional: true,
      placeholder: 'id',
      description: 'Organization this gateway belongs to.',
    }),
    gateway_id: keys.string({
      reload: 'command',
      optional: true,
      placeholder: 'id',
      description: "This gateway's id (its SSH principal).",
    }),
    replica: keys.string({
      reload: 'command',
      optional: true,
      placeholder: 'id',
      description:
        'Enroll as this replica of the gateway: several processes serve one gateway id, each with its own keys and ' +
        'token; enrolling a replica again replaces only it, enrolling without a replica replaces the whole gateway.',
    }),
    ...enrollmentTokenKeys('gateway'),
    client_id: keys.string({
      reload: 'command',
      optional: true,
      description: 'Machine identity client id for `enroll` (org-admin).',
    }),
    client_secret_file: keys.path({
      reload: 'command',
      optional: true,
      description: 'File holding the machine identity client secret.',
    }),
    // allowlist: deny by default
    allow_cidrs: keys.list({
      reload: 'live',
      flag: 'allow-cidr',
      default: [],
      placeholder: 'cidr,...',
      description:
        'Addresses targets may have (after name resolution), e.g. 10.0.0.0/24, 127.0.0.1/32. An IPv4 target is judged by IPv4 entries only, however it is written (::ffff:a.b.c.d); zoned addresses are refused. Empty: none.',
    }),
    allow_hosts: keys.list({
      reload: 'live',
      flag: 'allow-host',
      default: [],
      placeholder: 'name,...',
      description:
        'Host names grants may name, e.g. db.internal or *.svc.internal; their address must also be in allow_cidrs.',
    }),
    allow_ports: keys.list({
      reload: 'live',
      flag: 'allow-port',
      default: [],
      placeholder: 'port,...',
      description: 'Target ports or ranges, e.g. 5432, 8000-8099. Empty: none.',
    }),
    targets: keys.list({
      reload: 'live',
      flag: 'target',
      default: [],
      placeholder: 'name=host:port,...',
      description: 'Named targets a grant may use instead of host and port, e.g. pg=db.internal:5432.',
    }),
    http_upstream_tls: keys.bool({
      reload: 'live',
      default: false,
      description: 'In http mode, speak HTTPS to the target.',
    }),
    http_upstream_ca: keys.path({
      reload: 'live',
      optional: true,
      description: "PEM CA bundle for targets' certificates in http mode (default: the system store).",
    }),
    // tunnels
    keepalive_interval: keys.duration({
      reload: 'live',
      default: 10_000,
      description: 'SSH keepalive period; a proxy silent for keepalive_count_max + 1 periods is dropped.',
      validate: durationRange(100, 600_000),
    }),
    keepalive_count_max: keys.int({
      reload: 'live',
      default: 2,
      description: 'Unanswered keepalives tolerated.',
      validate: intRange(0, 100),
    }),
    reconnect_base: keys.duration({
      reload: 'live',
      default: 250,
      description: 'Ceiling of the first reconnect delay (full jitter below it); doubles per failure.',
      validate: durationRange(10, 60_000),
    }),
    reconnect_cap: keys.duration({
      reload: 'live',
      default: 30_000,
      description: 'Largest reconnect delay ceiling.',
      validate: durationRange(100, 3_600_000),
    }),
    max_streams: keys.int({
      reload: 'live',
      default: 10_000,
      description: 'Concurrent streams; more are refused (E_LIMIT).',
      validate: intRange(1, 1_000_000),
    }),
    handshake_timeout: keys.duration({
      reload: 'live',
      default: 10_000,
      description: 'Time a platform has to finish the inner TLS handshake.',
      validate: durationRange(100, 300_000),
    }),
    hold_inner_sessions: keys.bool({
      reload: 'live',
      default: true,
      description:
        'Offer platforms the held inner session (ALPN tcp+go, ping+go): a client runs the inner TLS handshake of its next stream ahead of need and this gateway holds it, without dialling the target, until the stream starts, then judges the grant again. Off: only the plain modes are offered and nothing is held (streams still work, each with its inner handshake on its path).',
    }),
    max_pending_channels: keys.int({
      reload: 'live',
      default: 256,
      description:
        'Channels one proxy may have open here whose inner TLS handshake is not complete; more channel opens are rejected at once (counted in infisical_gateway_limit_refusals_total).',
      validate: intRange(1, 100_000),
    }),
    max_held_sessions: keys.int({
      reload: 'live',
      default: 1024,
      description:
        'Inner sessions one proxy may have held here for their go (tcp+go, ping+go: a slot is taken when the handshake picks tcp+go or ping+go, so it also counts handshakes still under way; once authenticated and admitted a held session is no longer pending); past it a session is not held: a stream gets the plain mode at once, a session offered ahead of need is not opened (the client dials its stream in full). Counted in infisical_gateway_limit_refusals_total. The default holds one session for each of 1024 busy clients per proxy (an infisical-connect holds at most one, for --warm-relay seconds), four times max_pending_channels: a held session is authenticated and lives seconds where a pending one lives milliseconds, but each still keeps a TLS session and a timer.',
      validate: intRange(1, 1_000_000),
    }),
    connect_timeout: keys.duration({
      reload: 'live',
      default: 10_000,
      description: 'Time to connect to a target.',
      validate: durationRange(100, 300_000),
    }),
    ...enrolledKeys(),
    ...runtimeKeys({ opsListen: '127.0.0.1:9472' }),
  },
);

export type GatewayConfigSchema = typeof gatewayConfigSchema;
