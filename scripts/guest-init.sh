#!/bin/busybox sh
# /init of the real-guest test initramfs (packed by scripts/guest-setup.sh).
# Kernel parameters read here (not by the kernel):
#   gtest=boot|blk|blkmq|rng|net   what to do (default blk; net pings 10.0.2.2 from 10.0.2.15)
#   gsize=MiB               pattern size (default 4)
# Output: `GUEST: ...` lines on the serial console; the test parses them. Always powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp

gtest=blk
gsize=4
for a in $(cat /proc/cmdline); do
  case "$a" in
    gtest=*) gtest=${a#gtest=} ;;
    gsize=*) gsize=${a#gsize=} ;;
  esac
done

echo "GUEST: init at $(cut -d' ' -f1 /proc/uptime)s test=$gtest size=${gsize}MiB cpus=$(grep -c ^processor /proc/cpuinfo)"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio-rng virtio_console failover net_failover virtio_net; do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
dmesg | grep -i 'software IO TLB' | sed 's/^/GUEST: dmesg: /'

bit() { # bit N of a /sys features string
  echo "$1" | cut -c$(($2 + 1))
}
for d in /sys/bus/virtio/devices/*; do
  [ -e "$d/features" ] || continue
  f=$(cat $d/features)
  echo "GUEST: virtio-dev $(basename $d) id=$(cat $d/device) INDIRECT=$(bit $f 28) EVENT_IDX=$(bit $f 29) VERSION_1=$(bit $f 32) ACCESS_PLATFORM=$(bit $f 33) RING_PACKED=$(bit $f 34) BLK_MQ=$(bit $f 12)"
done

result=SKIP
case "$gtest" in
  blk | blkmq)
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ ! -b /dev/vda ]; then
      echo "GUEST: no /dev/vda"
      result=FAIL
    else
      hw=$(ls -d /sys/block/vda/mq/* 2>/dev/null | wc -l)
      echo "GUEST: vda hw_queues=$hw nr_tags=$(cat /sys/block/vda/mq/0/nr_tags 2>/dev/null)"
      n=$((gsize * 16))
      dd if=/dev/urandom of=/tmp/pat bs=64k count=$n 2>/dev/null
      ps=$(sha256sum /tmp/pat | cut -d' ' -f1)
      echo "GUEST: pattern sha256=$ps"
      if [ "$gtest" = blkmq ]; then
        h=$((n / 2))
        taskset 1 dd if=/tmp/pat of=/dev/vda bs=64k count=$h oflag=direct conv=fsync 2>/dev/null &
        p1=$!
        taskset 2 dd if=/tmp/pat of=/dev/vda bs=64k skip=$h seek=$h count=$h oflag=direct conv=fsync 2>/dev/null &
        p2=$!
        wait $p1
        r1=$?
        wait $p2
        r2=$?
        [ $r1 = 0 ] && [ $r2 = 0 ] || echo "GUEST: write failed ($r1/$r2)"
        for q in /sys/block/vda/mq/*; do echo "GUEST: mq $(basename $q) cpu_list=$(cat $q/cpu_list)"; done
        grep virtio /proc/interrupts | sed 's/^/GUEST: irq /' | tr -s ' '
      else
        dd if=/tmp/pat of=/dev/vda bs=64k count=$n oflag=direct conv=fsync 2>/dev/null || echo "GUEST: write failed"
      fi
      dd if=/dev/vda of=/tmp/rb bs=64k count=$n iflag=direct 2>/dev/null || echo "GUEST: read failed"
      rs=$(sha256sum /tmp/rb | cut -d' ' -f1)
      echo "GUEST: readback sha256=$rs"
      if [ "$ps" = "$rs" ]; then result=PASS; else result=FAIL; fi
    fi
    echo "GUEST: BLK-TEST $result"
    ;;
  rng)
    cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
    n=$(dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c)
    echo "GUEST: rng current=$cur bytes=$n"
    if [ "$n" = 256 ] && [ "${cur#virtio_rng}" != "$cur" ]; then echo "GUEST: RNG-TEST PASS"; else echo "GUEST: RNG-TEST FAIL"; fi
    ;;
  net)
    # eth0 (virtio_net, loaded above) gets 10.0.2.15/24 and pings the back-end's responder 10.0.2.2.
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ ! -e /sys/class/net/eth0 ]; then
      echo "GUEST: no eth0 ($(ls /sys/class/net | tr '\n' ' '))"
      result=FAIL
    else
      echo "GUEST: eth0 mac=$(cat /sys/class/net/eth0/address) driver=$(basename "$(readlink /sys/class/net/eth0/device/driver)")"
      ip link set lo up
      ip addr add 10.0.2.15/24 dev eth0
      ip link set eth0 up
      i=0
      while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
      echo "GUEST: eth0 operstate=$(cat /sys/class/net/eth0/operstate)"
      ping -c 3 -W 5 10.0.2.2 >/tmp/ping 2>&1
      rc=$?
      sed 's/^/GUEST: ping: /' /tmp/ping
      got=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping)
      echo "GUEST: net received=${got:-0} rc=$rc"
      if [ "$rc" = 0 ] && [ "${got:-0}" = 3 ]; then result=PASS; else result=FAIL; fi
      ip -s link show eth0 | sed 's/^/GUEST: link: /'
    fi
    echo "GUEST: NET-TEST $result"
    ;;
  *)
    echo "GUEST: BOOT-TEST PASS"
    ;;
esac
echo "GUEST: done at $(cut -d' ' -f1 /proc/uptime)s"
sync
poweroff -f
