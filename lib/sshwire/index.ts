/** ssh2 glue for OpenSSH certificates (over patches/ssh2+1.17.0.patch): the public surface of lib/sshwire. */
export {
  type CertClientOptions,
  type CertSshConnection,
  connectWithCertificate,
  type HostCertPolicy,
  verifyHostCertificate,
} from './client.js';
export {
  type CertServerOptions,
  createCertServer,
  listen,
  type UserAuthOptions,
  verifyUserAuth,
} from './server.js';
export {
  CERT_HOST_KEY_ALGORITHMS,
  CLIENT_ALGORITHMS,
  Client,
  type Connection,
  Server,
  TRANSPORT_ALGORITHMS,
} from './ssh2.js';
