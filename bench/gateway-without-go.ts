/**
 * A gateway as it was before `tcp+go` (lib/protocol/relay.ts): its inner server offers no GO_ALPN, so a client
 * negotiates `tcp`, sends no GO and holds no inner session ahead. Loaded with `NODE_OPTIONS=--import=<this
 * file>` into the daemons of the second deployment of `BENCH=setup`, so the same run measures tcp mode with the
 * inner session held ahead and without it (and shows a gateway without the variant still served). The module
 * is the daemons' own (the same file URL), so this changes their list.
 */
import { GO_ALPN, INNER_SERVER_ALPNS } from '../lib/protocol/relay.js';

const offered = INNER_SERVER_ALPNS as string[];
offered.splice(offered.indexOf(GO_ALPN), 1);
