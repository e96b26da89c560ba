#!/bin/busybox sh
# /init of the vfio-user real-guest initramfs (packed by scripts/vfio-user-setup.sh).
# Kernel parameters read here (not by the kernel):
#   vtest=blk|rng|boot   what to do (default boot)
#   vsize=MiB            blk pattern size (default 4)
# Output: `GUEST: ...` lines on the serial console; the test parses them. Always powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp

vtest=boot
vsize=4
for a in $(cat /proc/cmdline); do
  case "$a" in
    vtest=*) vtest=${a#vtest=} ;;
    vsize=*) vsize=${a#vsize=} ;;
  esac
done

echo "GUEST: init at=$(cut -d' ' -f1 /proc/uptime) test=$vtest"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio-rng virtio_console; do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done

bit() { # bit N of a /sys features string
  echo "$1" | cut -c$(($2 + 1))
}
for p in /sys/bus/pci/devices/*; do
  [ "$(cat $p/vendor)" = 0x1af4 ] || continue
  drv=$(basename "$(readlink $p/driver 2>/dev/null)" 2>/dev/null)
  echo "GUEST: pci $(basename $p) id=$(cat $p/vendor):$(cat $p/device) driver=${drv:-none} irq=$(cat $p/irq) msi_irqs=$(ls $p/msi_irqs 2>/dev/null | wc -l)"
done
for d in /sys/bus/virtio/devices/*; do
  [ -e "$d/features" ] || continue
  f=$(cat $d/features)
  drv=$(basename "$(readlink $d/driver 2>/dev/null)" 2>/dev/null)
  echo "GUEST: virtio-dev $(basename $d) id=$(cat $d/device) driver=${drv:-none} status=$(cat $d/status 2>/dev/null) INDIRECT=$(bit $f 28) EVENT_IDX=$(bit $f 29) SWIOTLB=$(bit $f 27) VERSION_1=$(bit $f 32) ACCESS_PLATFORM=$(bit $f 33) RING_PACKED=$(bit $f 34)"
done

result=SKIP
case "$vtest" in
  blk)
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ ! -b /dev/vda ]; then
      echo "GUEST: no /dev/vda"
      result=FAIL
    else
      echo "GUEST: vda sectors=$(cat /sys/block/vda/size)"
      n=$((vsize * 16))
      dd if=/dev/urandom of=/tmp/pat bs=64k count=$n 2>/dev/null
      ps=$(sha256sum /tmp/pat | cut -d' ' -f1)
      echo "GUEST: pattern sha256=$ps"
      dd if=/tmp/pat of=/dev/vda bs=64k count=$n oflag=direct conv=fsync 2>/dev/null || echo "GUEST: write failed"
      dd if=/dev/vda of=/tmp/rb bs=64k count=$n iflag=direct 2>/dev/null || echo "GUEST: read failed"
      rs=$(sha256sum /tmp/rb | cut -d' ' -f1)
      echo "GUEST: readback sha256=$rs"
      if [ "$ps" = "$rs" ]; then result=PASS; else result=FAIL; fi
    fi
    echo "GUEST: BLK-TEST $result"
    ;;
  rng)
    cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
    a=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
    b=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
    n=$(dd if=/dev/hwrng bs=64 count=64 2>/dev/null | wc -c)
    echo "GUEST: rng current=$cur"
    echo "GUEST: rng a=$a"
    echo "GUEST: rng b=$b"
    echo "GUEST: rng bulk=$n"
    ;;
  *)
    echo "GUEST: BOOT-TEST done"
    ;;
esac
dmesg | grep -iE 'virtio|vfio|refuses|probe' | sed 's/^/GUEST: dmesg: /'
echo "GUEST: done at=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
