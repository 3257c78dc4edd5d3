#!/usr/bin/env bash
# Makes (once) a Debian 12 minbase root with systemd, cached as a tar, for the packaging tests to boot with
# systemd-nspawn. Prints the tar's path. Safe to run concurrently: the tar is renamed into place when complete.
set -euo pipefail
cache=${INFISICAL_TEST_CACHE:-/var/cache/infisical-test}
# The name says what is in it: change it when the package list changes.
tar_path=$cache/bookworm-minbase-systemd-procps-openssl.tar
if [ -s "$tar_path" ]; then echo "$tar_path"; exit 0; fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
# systemd + dbus to boot, procps for /bin/kill (ExecReload=), openssl for the offline bundle's verify step (a
# standard Debian has it through ca-certificates); nothing else: the packages must install on a near-bare system.
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,openssl bookworm "$work/root" "$mirror" >"$work/log" 2>&1 || {
  tail -20 "$work/log" >&2
  exit 1
}
# Quiet, fast boots: no getty on the console, no network wait, no apt timers.
rm -f "$work/root/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
echo infisical-test > "$work/root/etc/hostname"
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tar_path"
echo "$tar_path"
