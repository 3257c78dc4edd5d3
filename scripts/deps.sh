#!/usr/bin/env bash
# Installs what the build and the tests need on a Debian 12 machine, then the npm packages.
# Safe to run again: it installs only what is missing. Says which step runs, since the first run takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '%s\n' "$*"; }

# socat (with openssl, openssh): the hand-built reference chain of bench/datapath.ts.
# apt-utils (apt-ftparchive), gnupg, createrepo-c: the offline bundle's signed apt and dnf repositories;
# dnf: its test installs from the dnf repository into an empty root.
DEBS=(build-essential python3 libsystemd-dev openssh-server openssh-client openssl socat rpm iproute2 debootstrap systemd-container
      postgresql postgresql-client libpq-dev curl groff-base man-db apt-utils gnupg createrepo-c dnf)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  start=$SECONDS
  step "installing Debian packages (${#missing[@]}): ${missing[*]}"
  step "  apt-get update…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # postgresql's package would start a cluster on the system; tests run their own, so keep it from starting.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  step "  apt-get install (about a minute)…"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
  step "  Debian packages installed ($((SECONDS - start)) s)"
fi

# node-gyp cannot download Node's headers here: build native addons against the local ones.
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
stamp=node_modules/.deps-stamp
if [ -L node_modules ]; then
  # A checkout sharing another one's packages (a git worktree): npm ci would empty the folder it points at.
  step "node_modules is a link to $(readlink node_modules): left as it is (run make deps where it points)"
elif [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ] || [ -n "$(find patches -newer "$stamp" -type f 2>/dev/null)" ]; then
  start=$SECONDS
  step "npm ci: npm packages, patched, native addons built here (about 2 minutes)…"
  npm ci --no-audit --no-fund
  touch "$stamp"
  step "  npm packages ready ($((SECONDS - start)) s)"
fi
