/**
 * `infisical-connect tcp` as it was before its bytes followed GO: a stream sends only what the local connection
 * had sent by the end of the inner handshake (on a held session, nothing yet), and the rest after the gateway's
 * status line. Loaded with `NODE_OPTIONS=--import=<this file>` into a second connect process of `BENCH=setup`,
 * so the same run measures tcp mode with and without `moreBytes` (lib/client/dial.ts). The module is the
 * process's own (the same file URL), so this changes the connector every stream goes through.
 */
import { GatewayConnector } from '../lib/client/connector.js';

const open = GatewayConnector.prototype.open;
GatewayConnector.prototype.open = function (this: GatewayConnector, target, mode, stream = {}) {
  const { moreBytes: _dropped, ...rest } = stream;
  return open.call(this, target, mode, rest);
};
