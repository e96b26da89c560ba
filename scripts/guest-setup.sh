#!/usr/bin/env bash
# Prepare what the real-guest tests (test/guests/) need, and cache it between runs:
#   - QEMU (qemu-system-x86, bookworm: 7.2), busybox-static, cpio — installed with apt-get
#     (apt-get update first) when missing and we are root on Debian;
#   - a Debian cloud kernel, unpacked with dpkg-deb -x (never installed on the host);
#   - a busybox initramfs whose /init writes a pattern to /dev/vda, reads it back, prints
#     GUEST: lines on the serial console and powers off (see scripts/guest-init.sh).
#
# Cache: $VIRTIOKIT_GUEST_CACHE (default /var/cache/virtiokit-guests). Prints `READY <dir>` on
# success; `UNAVAILABLE <reason>` and exit 3 when the tools cannot be had on this machine.
# Re-running is cheap: nothing is downloaded or rebuilt when the cache is complete.
set -euo pipefail

CACHE=${VIRTIOKIT_GUEST_CACHE:-/var/cache/virtiokit-guests}
HERE=$(cd "$(dirname "$0")" && pwd)
INIT_SRC="$HERE/guest-init.sh"
# shellcheck source=lib-guest.sh
. "$HERE/lib-guest.sh"

# Serialize concurrent runs (parallel test files on a cold cache) on one lock next to the cache.
mkdir -p "$(dirname "$CACHE")" 2>/dev/null || true
if command -v flock >/dev/null 2>&1 && { exec 9>"${CACHE%/}.lock"; } 2>/dev/null; then
  flock -w 900 9 || true
fi

unavailable() {
  echo "UNAVAILABLE $*"
  exit 3
}

have_tools() {
  command -v qemu-system-x86_64 >/dev/null 2>&1 && [ -x /bin/busybox ] && command -v cpio >/dev/null 2>&1 &&
    file_is_static /bin/busybox
}

file_is_static() {
  # busybox-static ships a static /bin/busybox; the dynamic `busybox` package would not run in the initramfs.
  ! ldd "$1" >/dev/null 2>&1
}

can_apt() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -f /etc/debian_version ]
}

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq >/dev/null || unavailable "apt-get update failed (no network to the Debian mirror?)"
    APT_UPDATED=1
  fi
}

# --- 1. host tools
if ! have_tools; then
  can_apt || unavailable "qemu-system-x86_64, a static /bin/busybox and cpio are missing, and this is not root on Debian (install qemu-system-x86 busybox-static cpio)"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static cpio >/dev/null ||
    unavailable "apt-get install qemu-system-x86 busybox-static cpio failed"
  have_tools || unavailable "tools still missing after apt-get install"
fi

mkdir -p "$CACHE"

# --- 2. kernel (unpacked, never installed)
if [ ! -s "$CACHE/vmlinuz" ] || [ ! -d "$CACHE/modules" ]; then
  command -v apt-get >/dev/null 2>&1 || unavailable "no apt-get to download a Debian kernel"
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\).*/\1/p' | head -n1 || true)
  if [ -z "$pkg" ]; then
    can_apt || unavailable "cannot resolve linux-image-cloud-amd64 (apt lists empty and not root)"
    apt_update_once
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\).*/\1/p' | head -n1 || true)
  fi
  [ -n "$pkg" ] || unavailable "apt-cache knows no linux-image-*-cloud-amd64"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1) || { rm -rf "$tmp"; unavailable "apt-get download $pkg failed"; }
  dpkg-deb -x "$tmp"/*.deb "$tmp/root"
  kver=$(ls "$tmp/root/lib/modules" | head -n1)
  rm -rf "$CACHE/modules" "$CACHE/modules.new"
  mkdir -p "$CACHE/modules.new"
  # Only the virtio modules the initramfs needs (decompressed: busybox insmod has no xz).
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio-rng virtio_console failover net_failover virtio_net; do
    f=$(find "$tmp/root/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
    [ -n "$f" ] || continue
    case "$f" in
      *.xz) xz -dc "$f" >"$CACHE/modules.new/$m.ko" ;;
      *.zst) zstd -qdc "$f" >"$CACHE/modules.new/$m.ko" ;;
      *) cp "$f" "$CACHE/modules.new/$m.ko" ;;
    esac
  done
  cp "$tmp/root/boot/vmlinuz-$kver" "$CACHE/vmlinuz.new"
  echo "$pkg $kver" >"$CACHE/kernel.txt"
  mv "$CACHE/modules.new" "$CACHE/modules"
  mv "$CACHE/vmlinuz.new" "$CACHE/vmlinuz"
  rm -rf "$tmp"
fi

# --- 3. initramfs (rebuilt when /init or busybox changes)
stamp=$( (cat "$INIT_SRC"; sha256sum /bin/busybox; ls "$CACHE/modules") | sha256sum | cut -c1-16)
if [ ! -s "$CACHE/initramfs.cpio" ] || [ "$(cat "$CACHE/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
  pack_initramfs "$INIT_SRC" "$CACHE/modules" "$CACHE/initramfs.cpio"
  echo "$stamp" >"$CACHE/initramfs.stamp"
fi

echo "READY $CACHE"
