#!/bin/sh
# Installs the Infisical gateway suite from this offline bundle, with no network: every file is checked
# against SHA256SUMS first, and nothing is installed if one differs or is missing.
#   ./install.sh [ca] [proxy] [gateway] [connect]     (default: all four)
# Debian/Ubuntu: the .deb files through apt (dpkg if apt is absent); RHEL-like: the .rpm files through dnf/rpm.
# Nothing is enabled or started: configure /etc/infisical/<name>.conf, then see INSTALL.md.
set -eu
cd "$(dirname "$0")"
if [ "$(id -u)" -ne 0 ]; then echo "install.sh: run as root" >&2; exit 1; fi
if ! sha256sum --check --strict --quiet SHA256SUMS; then
  echo "install.sh: SHA256SUMS check failed; nothing installed (copy the bundle again)" >&2
  exit 1
fi
programs=${*:-ca proxy gateway connect}
if command -v dpkg >/dev/null 2>&1 && [ -n "$(ls ./*.deb 2>/dev/null)" ]; then
  files=""
  for p in $programs; do
    f=$(ls ./infisical-"$p"_*_amd64.deb 2>/dev/null) || { echo "install.sh: no package for $p" >&2; exit 1; }
    files="$files $f"
  done
  if command -v apt-get >/dev/null 2>&1; then
    # Local files; no index update (the dependencies are base-system libraries already present). Not
    # --no-download: apt 2.6 then refuses local .deb paths ("Pathname to install is not absolute").
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $files
  else
    # shellcheck disable=SC2086
    dpkg -i $files
  fi
elif command -v rpm >/dev/null 2>&1; then
  files=""
  for p in $programs; do
    f=$(ls ./infisical-"$p"-*.x86_64.rpm 2>/dev/null) || { echo "install.sh: no package for $p" >&2; exit 1; }
    files="$files $f"
  done
  if command -v dnf >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    dnf install -y --disablerepo='*' $files
  else
    # shellcheck disable=SC2086
    rpm -Uvh $files
  fi
else
  echo "install.sh: neither dpkg nor rpm found" >&2
  exit 1
fi
echo "installed: $programs. Next: edit /etc/infisical/<name>.conf, then see INSTALL.md (nothing was started)."
