#!/bin/busybox sh
# shellcheck shell=dash
# /init of the attach validation guest (tests/attach/attach_qemu.py): load
# the virtio balloon driver from the same Debian kernel package (it is a
# module there, with virtio, virtio_ring and virtio_pci), run the writer,
# then stay up for the host to balloon it and end it over QMP.
#   /pgt/modules      module file names, in load order
#   /pgt/writer-args  arguments of /pgt/attach-writer ("" : no writer)
# The writer starts when the host says "go" on the second serial port
# (/dev/ttyS1): after pgtrack attached and the boot-time free page
# reporting is over, so neither is mistaken for the writer's rate.
# Markers: @@A READY ..., @@A WAIT, the writer's @@W lines, @@A IDLE.
/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin /proc /sys /dev /tmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

loaded=""
while read -r m; do
	[ -n "$m" ] || continue
	if insmod "/pgt/mod/$m" 2>/tmp/err; then
		loaded="$loaded${loaded:+,}${m%.ko}"
	else
		echo "@@A INSMOD-FAILED $m $(cat /tmp/err)"
	fi
done < /pgt/modules
balloon=0
for d in /sys/bus/virtio/drivers/virtio_balloon/virtio*; do
	[ -e "$d" ] && balloon=1
done
echo "@@A READY kernel=$(uname -r) modules=$loaded balloon=$balloon" \
	"memtotal_kb=$(awk '/MemTotal/ { print $2 }' /proc/meminfo)"
args=$(cat /pgt/writer-args 2>/dev/null)
if [ -n "$args" ]; then
	stty -F /dev/ttyS1 -echo 2>/dev/null
	echo "@@A WAIT"
	read -r go < /dev/ttyS1
	echo "@@A GO $go"
	# shellcheck disable=SC2086 # the arguments are words
	/pgt/attach-writer $args
	echo "@@A WRITER-EXIT rc=$?"
fi
echo "@@A IDLE"
while :; do
	sleep 2
	echo "@@A MEMFREE kb=$(awk '/MemFree/ { print $2 }' /proc/meminfo)"
done
