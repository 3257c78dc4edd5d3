#!/usr/bin/env bash
# The offline bundle OUT/infisical-offline-<version>.tar.gz, from the packages given:
#   deb/   the .debs as a flat apt repository (Packages, Release; InRelease and Release.gpg signed)
#   rpm/   the .rpms (signed) as a dnf/yum repository (createrepo_c; repodata/repomd.xml.asc signed)
#   repo-key.asc    the OpenPGP key that signed both repositories and the rpms
#   install.sh, INSTALL.md, release.pub
#   SHA256SUMS      every file above; SHA256SUMS.sig: its Ed25519 signature by the release key
# The release key is the root of trust: the operator pins it (INSTALL.md), and SHA256SUMS binds every other
# file to it, repo-key.asc included. The repository key is made for this bundle alone and its private half is
# destroyed when the bundle is written, so there is one long-lived secret, not two.
#
#   scripts/offline-bundle.sh VERSION OUT_DIR PACKAGE...     (scripts/package.sh calls it)
#   RELEASE_KEY=path         the release private key (Ed25519, PEM). Absent: a development key OUT_DIR/release-dev.key
#                            (made once, reused), announced loudly: such a bundle is for tests, not for release.
#   RELEASE_KEY_PASSIN=arg   openssl's -passin for an encrypted RELEASE_KEY (env:VAR, file:path, fd:N)
# Also writes OUT_DIR/release.pub (the public key, beside the bundle) and prints its fingerprint: the SHA-256
# of the key's DER form, as `openssl pkey -pubin -in release.pub -outform DER | sha256sum` shows it.
# The .rpms given are signed in place.
set -euo pipefail
cd "$(dirname "$0")/.."
die() {
  echo "offline-bundle: $*" >&2
  exit 1
}
[ $# -ge 3 ] || die "usage: scripts/offline-bundle.sh VERSION OUT_DIR PACKAGE..."
VERSION=$1
OUT=$(realpath -m "$2")
shift 2
debs=()
rpms=()
for f in "$@"; do
  case $f in
    *.deb) debs+=("$(realpath "$f")") ;;
    *.rpm) rpms+=("$(realpath "$f")") ;;
    *) die "not a package: $f" ;;
  esac
done
need() { command -v "$1" >/dev/null || die "$1 missing (apt-get install $2; scripts/deps.sh installs it)"; }
need openssl openssl
need gpg gnupg
need apt-ftparchive apt-utils
if [ ${#rpms[@]} -gt 0 ]; then
  need createrepo_c createrepo-c
  need rpmsign rpm
fi

bundle=infisical-offline-$VERSION
work=$(mktemp -d)
export GNUPGHOME=$work/gnupg
trap 'gpgconf --kill gpg-agent >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bdir=$work/$bundle
mkdir -p "$OUT" "$bdir" && mkdir -m 0700 "$GNUPGHOME"
echo 'trust-model always' >"$GNUPGHOME/gpg.conf" # a keyring of one key, made here: no trust database to check

# The release key: given, or a development key.
dev=
if [ -n "${RELEASE_KEY:-}" ]; then
  key=$RELEASE_KEY
  [ -r "$key" ] || die "RELEASE_KEY=$key is not readable"
else
  dev=1
  key=$OUT/release-dev.key
  if [ ! -s "$key" ]; then (umask 077 && openssl genpkey -algorithm ed25519 -out "$key"); fi
fi
passin=()
[ -z "${RELEASE_KEY_PASSIN:-}" ] || passin=(-passin "$RELEASE_KEY_PASSIN")
openssl pkey "${passin[@]}" -in "$key" -pubout -out "$bdir/release.pub" || die "cannot read the private key $key"
openssl pkey -pubin -in "$bdir/release.pub" -noout -text | head -1 | grep -q '^ED25519 Public-Key' ||
  die "$key is not an Ed25519 private key (make one: openssl genpkey -algorithm ed25519 -out release.key)"
fingerprint=$(openssl pkey -pubin -in "$bdir/release.pub" -outform DER | sha256sum | cut -d' ' -f1)

# The repository key, for apt and dnf, which check OpenPGP signatures only. RSA-3072: every apt, rpm and dnf
# in use verifies it (EdDSA in rpm is recent).
uid="Infisical gateway suite offline repository $VERSION (release key ${fingerprint:0:16}${dev:+, DEVELOPMENT})"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-gen-key "$uid" rsa3072 sign never 2>/dev/null
repo_key=$(gpg --batch --with-colons --list-secret-keys | awk -F: '/^fpr/ {print $10; exit}')
gpg --batch --armor --export "$repo_key" >"$bdir/repo-key.asc"

# apt: a flat repository (`deb [signed-by=…/repo-key.asc] file:…/deb ./`). Release is written outside the
# directory first, or it would list itself.
if [ ${#debs[@]} -gt 0 ]; then
  mkdir "$bdir/deb"
  cp "${debs[@]}" "$bdir/deb/"
  (
    cd "$bdir/deb"
    apt-ftparchive packages . >Packages 2>/dev/null
    gzip -9nk Packages
    apt-ftparchive -o APT::FTPArchive::MD5=false -o APT::FTPArchive::SHA1=false \
      -o APT::FTPArchive::Release::Origin=Infisical -o APT::FTPArchive::Release::Label="Infisical offline" \
      -o APT::FTPArchive::Release::Suite=offline -o APT::FTPArchive::Release::Codename=offline \
      -o APT::FTPArchive::Release::Architectures=amd64 release . >"$work/Release"
    mv "$work/Release" Release
    gpg --batch --quiet --local-user "$repo_key" --clearsign -o InRelease Release
    gpg --batch --quiet --local-user "$repo_key" --detach-sign -o Release.gpg Release
  )
fi

# dnf/yum: signed rpms (gpgcheck=1) and signed repository metadata (repo_gpgcheck=1).
if [ ${#rpms[@]} -gt 0 ]; then
  mkdir "$bdir/rpm"
  # Debian's rpm calls gpg2 by default; Debian has gpg.
  rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name $repo_key" "${rpms[@]}" \
    </dev/null >"$work/rpmsign.log" 2>&1 || die "rpmsign failed: $(cat "$work/rpmsign.log")"
  mkdir "$work/rpmdb"
  rpm --dbpath "$work/rpmdb" --import "$bdir/repo-key.asc"
  for f in "${rpms[@]}"; do
    rpm --dbpath "$work/rpmdb" -K "$f" | grep -q 'digests signatures OK$' || die "rpmsign left $f unsigned"
  done
  cp "${rpms[@]}" "$bdir/rpm/"
  createrepo_c --quiet --no-database "$bdir/rpm"
  gpg --batch --quiet --local-user "$repo_key" --armor --detach-sign -o "$bdir/rpm/repodata/repomd.xml.asc" \
    "$bdir/rpm/repodata/repomd.xml"
fi
gpgconf --kill gpg-agent >/dev/null 2>&1 || true
rm -rf "$GNUPGHOME" # the repository key's private half: gone with this bundle

install -m 0755 packaging/offline/install.sh "$bdir/install.sh"
sed "s|@VERSION@|$VERSION|g" packaging/offline/INSTALL.md >"$bdir/INSTALL.md"
chmod 0644 "$bdir/INSTALL.md" "$bdir/release.pub" "$bdir/repo-key.asc"

# The manifest, then its signature; checked here as install.sh will check it.
(cd "$bdir" && find . -type f ! -name SHA256SUMS ! -name SHA256SUMS.sig -printf '%P\n' | LC_ALL=C sort |
  xargs sha256sum >SHA256SUMS)
openssl pkeyutl -sign "${passin[@]}" -inkey "$key" -rawin -in "$bdir/SHA256SUMS" -out "$bdir/SHA256SUMS.sig"
(cd "$bdir" && openssl pkeyutl -verify -pubin -inkey release.pub -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig \
  >/dev/null && sha256sum --check --strict --quiet SHA256SUMS) || die "the bundle does not verify"

tar -C "$work" --owner=0 --group=0 --numeric-owner -czf "$OUT/$bundle.tar.gz" "$bundle"
(cd "$OUT" && sha256sum "$bundle.tar.gz" >"$bundle.tar.gz.sha256")
cp "$bdir/release.pub" "$OUT/release.pub"
echo "offline bundle: $OUT/$bundle.tar.gz"
echo "  SHA256SUMS signed by the release key $OUT/release.pub"
echo "  release key fingerprint (sha256 of its DER form): $fingerprint"
if [ -n "$dev" ]; then
  cat >&2 <<EOF
offline-bundle: ************************************************************************************
offline-bundle: SIGNED WITH A DEVELOPMENT KEY ($key), made on this host: NOT A RELEASE.
offline-bundle: Operators who pin the published release key will refuse this bundle. To sign a release:
offline-bundle:   RELEASE_KEY=/path/to/release-ed25519.pem make package
offline-bundle: ************************************************************************************
EOF
fi
