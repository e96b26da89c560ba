# Shell functions shared by the guest setup scripts (guest-setup.sh, vfio-user-setup.sh); sourced,
# not run. Bash; the caller has `set -euo pipefail`.

# pack_initramfs INIT MODULES_DIR OUT_CPIO
#   A busybox initramfs: /bin/busybox (the host's static one), INIT as /init, every *.ko of
#   MODULES_DIR in /lib/modules, /dev/console. Written to OUT_CPIO atomically (temp file + mv);
#   entries sorted so the archive does not depend on directory order.
pack_initramfs() {
  local init=$1 modules=$2 out=$3 stage
  stage=$(mktemp -d)
  mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib/modules}
  cp /bin/busybox "$stage/bin/busybox"
  cp "$init" "$stage/init"
  chmod 755 "$stage/init"
  cp "$modules"/*.ko "$stage/lib/modules/"
  mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true
  (cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) >"$out.tmp.$$"
  mv "$out.tmp.$$" "$out"
  rm -rf "$stage"
}
