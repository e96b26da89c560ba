#!/usr/bin/env bash
# Prepare what the real-QEMU-11 vfio-user tests (test/guests/vfio-user.test.ts) need, cached between runs:
#   - the guest kernel, its virtio modules and a static busybox: reused from scripts/guest-setup.sh
#     (Debian bookworm 6.1 cloud kernel, unpacked, never installed);
#   - a Debian sid root made by debootstrap (minbase) holding qemu-system-x86 11.x, whose
#     `-device vfio-user-pci` the host's QEMU 7.2 lacks. Nothing from sid is installed on the host:
#     QEMU runs through the sid root's own dynamic loader (no chroot, no mounts, no root needed);
#   - a wrapper `$CACHE/vfio-user/qemu-system-x86_64` that does that (adds the -L firmware paths);
#   - a busybox initramfs whose /init is scripts/vfio-user-init.sh.
#
# Cache: $VIRTIOKIT_GUEST_CACHE (default /var/cache/virtiokit-guests); the sid root goes to
# $CACHE/sid-root. Prints `READY <dir>` on success, or `UNAVAILABLE <reason>` and exit 3 when this
# machine cannot provide the tools (not root, not Debian, no network to the mirror, ...), with
# `SKIPPED <step>: <why>` lines before it. Re-running is cheap when the cache is complete.
# Env: VIRTIOKIT_DEBIAN_MIRROR overrides the archive URI (default: the host's own apt source).
set -euo pipefail

CACHE=${VIRTIOKIT_GUEST_CACHE:-/var/cache/virtiokit-guests}
SIDROOT="$CACHE/sid-root"
OUT="$CACHE/vfio-user"
HERE=$(cd "$(dirname "$0")" && pwd)
INIT_SRC="$HERE/vfio-user-init.sh"
# shellcheck source=lib-guest.sh
. "$HERE/lib-guest.sh"
T0=$(date +%s.%N)

unavailable() {
  echo "UNAVAILABLE $*"
  exit 3
}
note() { echo "vfio-user-setup: $*"; }
elapsed() { echo "$(date +%s.%N) $T0" | awk '{ printf "%.1f", $1 - $2 }'; }

is_root() { [ "$(id -u)" = 0 ]; }
is_debian() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; }

# --- 1. kernel, modules, busybox: the vhost-user guest setup's cache
gs=$(VIRTIOKIT_GUEST_CACHE="$CACHE" bash "$HERE/guest-setup.sh" 2>&1) || true
if ! grep -q '^READY ' <<<"$gs"; then
  why=$(sed -n 's/^UNAVAILABLE //p' <<<"$gs" | head -n1)
  echo "SKIPPED guest kernel/initramfs: scripts/guest-setup.sh: ${why:-$(tail -n2 <<<"$gs" | tr '\n' ' ')}"
  unavailable "no guest kernel (scripts/guest-setup.sh: ${why:-failed})"
fi
[ -s "$CACHE/vmlinuz" ] && [ -d "$CACHE/modules" ] || unavailable "guest-setup.sh left no $CACHE/vmlinuz or modules/"

LDSO="$SIDROOT/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
QEMU_BIN="$SIDROOT/usr/bin/qemu-system-x86_64"

# --- 2. the sid root with QEMU 11
if [ -f "$SIDROOT/.virtiokit-complete" ] && [ -x "$QEMU_BIN" ] && [ -x "$LDSO" ]; then
  note "sid root cached at $SIDROOT ($(cat "$SIDROOT/.virtiokit-complete"))"
else
  if ! is_root; then
    echo "SKIPPED debootstrap of Debian sid: needs root (uid $(id -u)); run once as root: sudo bash scripts/vfio-user-setup.sh"
    unavailable "no cached sid root at $SIDROOT and not root"
  fi
  if ! is_debian; then
    echo "SKIPPED debootstrap of Debian sid: this host is not Debian (no /etc/debian_version or apt-get)"
    unavailable "no cached sid root and not a Debian host"
  fi
  mirror=${VIRTIOKIT_DEBIAN_MIRROR:-}
  if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
      grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  if ! command -v debootstrap >/dev/null 2>&1; then
    note "installing debootstrap on the host (apt-get update first)"
    apt-get update -qq >/dev/null 2>&1 || { echo "SKIPPED debootstrap: apt-get update failed"; unavailable "apt-get update failed (no network to the Debian mirror?)"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 ||
      unavailable "apt-get install debootstrap failed"
  fi
  work="$SIDROOT.partial"
  # A previous interrupted run may have left mounts: remove them before deleting anything.
  for m in "$work/dev" "$work/proc"; do mountpoint -q "$m" 2>/dev/null && { umount -R "$m" 2>/dev/null || umount -l "$m"; }; done
  if mount | grep -q " $work/"; then unavailable "$work still has mounts under it; unmount them first"; fi
  rm -rf "$work"
  mkdir -p "$CACHE"
  note "debootstrap --variant=minbase sid from $mirror (about 30-60 s)"
  t=$(date +%s)
  if ! timeout 1200 debootstrap --variant=minbase sid "$work" "$mirror" >"$CACHE/debootstrap.log" 2>&1; then
    tail -n5 "$CACHE/debootstrap.log" | sed 's/^/  /'
    mount | grep -q " $work/" || rm -rf "$work"
    echo "SKIPPED Debian sid root: debootstrap failed (see $CACHE/debootstrap.log)"
    unavailable "debootstrap of sid from $mirror failed (no network to the mirror?)"
  fi
  note "debootstrap done in $(($(date +%s) - t)) s"
  # The reachable mirror may be a frozen snapshot whose sid InRelease is past Valid-Until.
  echo 'Acquire::Check-Valid-Until "false";' >"$work/etc/apt/apt.conf.d/99no-valid-until"
  printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
  chmod 755 "$work/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$work/etc/resolv.conf" 2>/dev/null || true
  cleanup_mounts() {
    for m in "$work/dev" "$work/proc"; do
      mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
    done
    return 0
  }
  trap cleanup_mounts EXIT
  mount -t proc proc "$work/proc"
  mount --bind /dev "$work/dev" # non-recursive: only the device nodes, no /dev/pts or /dev/shm mounts
  inroot() { chroot "$work" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 INITRD=No "$@"; }
  t=$(date +%s)
  inroot apt-get update -qq >>"$CACHE/debootstrap.log" 2>&1 || unavailable "apt-get update inside the sid root failed"
  inroot apt-get install -y -qq --no-install-recommends qemu-system-x86 >>"$CACHE/debootstrap.log" 2>&1 ||
    unavailable "apt-get install qemu-system-x86 inside the sid root failed (see $CACHE/debootstrap.log)"
  inroot apt-get clean
  rm -rf "$work/var/lib/apt/lists/"*
  note "qemu-system-x86 installed in the sid root in $(($(date +%s) - t)) s"
  cleanup_mounts
  trap - EXIT
  mountpoint -q "$work/dev" || mountpoint -q "$work/proc" && unavailable "could not unmount $work/{dev,proc}"
  ver=$(dpkg-query --admindir="$work/var/lib/dpkg" -W -f='${Version}' qemu-system-x86 2>/dev/null || echo '?')
  echo "qemu-system-x86 $ver, made $(date -u +%FT%TZ) from $mirror" >"$work/.virtiokit-complete"
  rm -rf "$SIDROOT"
  mv "$work" "$SIDROOT"
fi

# --- 3. wrapper: QEMU 11 through the sid root's own ld.so (no root, no chroot, no mounts)
wrapper="#!/bin/sh
# QEMU 11 from the Debian sid root $SIDROOT, run through that root's dynamic loader.
# -L: /proc/self/exe is ld.so, so QEMU cannot find its firmware by itself (it would take the host's).
export QEMU_MODULE_DIR=\"$SIDROOT/usr/lib/x86_64-linux-gnu/qemu\"
exec \"$LDSO\" --library-path \"$SIDROOT/usr/lib/x86_64-linux-gnu\" \\
  \"$QEMU_BIN\" -L \"$SIDROOT/usr/share/qemu\" -L \"$SIDROOT/usr/share/seabios\" \"\$@\""
if [ "$(cat "$OUT/qemu-system-x86_64" 2>/dev/null)" != "$wrapper" ]; then
  mkdir -p "$OUT" 2>/dev/null && [ -w "$OUT" ] || unavailable "cannot write $OUT (run this script once as root)"
  printf '%s\n' "$wrapper" >"$OUT/qemu-system-x86_64.tmp.$$"
  chmod 755 "$OUT/qemu-system-x86_64.tmp.$$"
  mv "$OUT/qemu-system-x86_64.tmp.$$" "$OUT/qemu-system-x86_64"
fi
qver=$("$OUT/qemu-system-x86_64" --version 2>&1 | head -n1) || unavailable "QEMU from the sid root does not start: $qver"
# Not `-device help`: that loads every module, and ones missing in the root (no-install-recommends,
# e.g. ui-opengl) are then looked up in the host's own QEMU module dir, which aborts QEMU 11.
"$OUT/qemu-system-x86_64" -machine none -device vfio-user-pci,help 2>/dev/null | grep -q 'socket=' ||
  unavailable "$qver has no vfio-user-pci device"

# --- 4. initramfs with our /init (rebuilt when /init, busybox or the modules change)
[ -x /bin/busybox ] || unavailable "no static /bin/busybox (guest-setup.sh installs busybox-static)"
stamp=$( (cat "$INIT_SRC"; sha256sum /bin/busybox; ls -l "$CACHE/modules") | sha256sum | cut -c1-16)
if [ ! -s "$OUT/initramfs.cpio" ] || [ "$(cat "$OUT/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
  [ -w "$OUT" ] || unavailable "the initramfs in $OUT is missing or stale and $OUT is not writable (run this script once as root)"
  pack_initramfs "$INIT_SRC" "$CACHE/modules" "$OUT/initramfs.cpio"
  echo "$stamp" >"$OUT/initramfs.stamp"
  note "initramfs rebuilt"
fi
[ "$(readlink "$OUT/vmlinuz" 2>/dev/null)" = ../vmlinuz ] || ln -sfn ../vmlinuz "$OUT/vmlinuz"

note "$qver; kernel $(cut -d' ' -f2 "$CACHE/kernel.txt" 2>/dev/null); sid root $(du -sh "$SIDROOT" 2>/dev/null | cut -f1); setup $(elapsed) s"
echo "READY $OUT"
