#!/bin/sh
# Installs the Infisical gateway suite from this offline bundle, with no network. Nothing is installed unless
# SHA256SUMS carries a valid Ed25519 signature by the release key you pinned, and every file matches it.
#   ./install.sh --release-key /path/to/pinned.pub [ca] [proxy] [gateway] [connect]   (default: all four)
#   ./install.sh --release-fingerprint HEX [...]   pins the bundle's release.pub if its fingerprint is HEX
#   ./install.sh --verify-only --release-key ...   checks, installs nothing (needs no root)
# The pin comes from outside the bundle (INSTALL.md, "Pin the release key"): the bundle's own release.pub
# proves nothing by itself. Needs openssl 3.0 or later and sha256sum, as stock Debian 12 and RHEL 9 have.
# Debian/Ubuntu: the .debs through apt (dpkg if apt is absent); RHEL-like: the .rpms through dnf (rpm).
# Nothing is enabled or started: configure /etc/infisical/<name>.conf, then see INSTALL.md.
set -eu
die() {
  echo "install.sh: $*" >&2
  exit 1
}
usage() {
  sed -n '2,10s/^# \{0,1\}//p' "$0"
}
key=
fingerprint=
verify_only=
programs=
while [ $# -gt 0 ]; do
  case $1 in
    --release-key)
      [ $# -ge 2 ] || die "--release-key needs a file"
      key=$2
      shift 2
      ;;
    --release-key=*) key=${1#*=} && shift ;;
    --release-fingerprint)
      [ $# -ge 2 ] || die "--release-fingerprint needs a value"
      fingerprint=$2
      shift 2
      ;;
    --release-fingerprint=*) fingerprint=${1#*=} && shift ;;
    --verify-only) verify_only=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    ca | proxy | gateway | connect) programs="$programs $1" && shift ;;
    *) usage >&2 && die "unknown argument: $1" ;;
  esac
done
case $key in "" | /*) ;; *) key=$PWD/$key ;; esac
cd "$(dirname "$0")"
if [ -z "$verify_only" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (or --verify-only)"; fi
command -v openssl >/dev/null 2>&1 || die "openssl (3.0 or later) is needed to check the signature; nothing installed"

# 1. The pinned release key.
bundled=$(openssl pkey -pubin -in release.pub -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ -n "$fingerprint" ]; then
  [ -z "$key" ] || die "give --release-key or --release-fingerprint, not both"
  want=$(printf %s "$fingerprint" | tr 'A-F' 'a-f' | tr -d ': ')
  [ "$bundled" = "$want" ] || die "this bundle's release.pub has the fingerprint $bundled, not the pinned $want; nothing installed"
  key=$PWD/release.pub
elif [ -z "$key" ]; then
  cat >&2 <<EOF
install.sh: no pinned release key; nothing installed. This bundle's release.pub has the fingerprint
  $bundled
Compare it with the fingerprint published for the release (out of band, never from this bundle), then:
  $0 --release-fingerprint <published fingerprint> [programs]
or keep a copy of the release key you trust and:  $0 --release-key /path/to/pinned.pub [programs]
EOF
  exit 2
fi
[ -r "$key" ] || die "cannot read the release key $key"

# 2. The manifest's signature, then every file against the manifest.
if ! openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig >/dev/null 2>&1; then
  die "SHA256SUMS is not signed by the pinned release key $key; nothing installed"
fi
if ! sha256sum --check --strict --quiet SHA256SUMS; then
  die "SHA256SUMS check failed; nothing installed (copy the bundle again)"
fi
echo "install.sh: bundle verified: SHA256SUMS signed by the pinned release key, every file matches"
[ -z "$verify_only" ] || exit 0

# 3. Install the packages the signed manifest lists (never a file that is merely present).
listed() { # prefix suffix: the one listed file named prefix…suffix
  f=$(awk -v pre="$1" -v suf="$2" 'index($2, pre) == 1 && substr($2, length($2) - length(suf) + 1) == suf {print "./" $2}' SHA256SUMS)
  [ -n "$f" ] && [ "$(echo "$f" | wc -l)" -eq 1 ] || return 1
  echo "$f"
}
programs=${programs:-ca proxy gateway connect}
files=
if command -v dpkg >/dev/null 2>&1 && grep -q ' deb/.*\.deb$' SHA256SUMS; then
  for p in $programs; do
    f=$(listed "deb/infisical-${p}_" _amd64.deb) || die "no package for $p in this bundle"
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
elif command -v rpm >/dev/null 2>&1 && grep -q ' rpm/.*\.rpm$' SHA256SUMS; then
  for p in $programs; do
    f=$(listed "rpm/infisical-${p}-" .x86_64.rpm) || die "no package for $p in this bundle"
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
  die "neither dpkg nor rpm found, or no package for this system in the bundle"
fi
echo "installed:$(printf ' %s' $programs). Next: edit /etc/infisical/<name>.conf, then see INSTALL.md (nothing was started)."
