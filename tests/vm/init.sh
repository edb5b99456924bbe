#!/bin/busybox sh
# shellcheck disable=SC3045 # busybox ash has ulimit -l and -c
# /init of the pgtrack VM test guest (busybox initramfs, see vmtest.py).
# Runs every program of /pgt/list with a timeout and writes its output to
# the console between markers the host parses:
#   @@PGT-VM READY <facts>            the guest is up
#   @@PGT-VM BEGIN <name>             a program starts
#   @@O|<line>  @@E|<line>            its stdout / stderr
#   @@K|<line>                        kernel log lines it caused
#   @@D|<line>                        its threads' state when it timed out
#   @@PGT-VM END <name> rc=<rc> cs=<centiseconds>
#   @@PGT-VM DONE                     all ran; the guest powers off
# /pgt/list lines: name|timeout-seconds|VAR=value ...|command args
# Each line is prefixed so kernel messages cannot be mistaken for output.

/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# no tmpfs over /tmp: the programs keep their build paths, which may be
# under /tmp (a CI clone), and the initramfs root is writable anyway
mkdir -p /dev/hugepages /dev/shm
mount -t hugetlbfs hugetlbfs /dev/hugepages
mount -t tmpfs tmpfs /dev/shm
# -nic none: only loopback, for the tools that serve /metrics on 127.0.0.1
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

HUGEPAGES=0
# shellcheck source=/dev/null # written by vmtest.py
[ -f /pgt/config ] && . /pgt/config
echo "$HUGEPAGES" > /proc/sys/vm/nr_hugepages 2>/dev/null
ulimit -l unlimited 2>/dev/null
ulimit -c 0
cd /tmp || exit 1

uptime_cs() {
	read -r up _ < /proc/uptime
	echo "${up%.*}${up#*.}"
}

# Kill program $1 after $2 seconds, first showing where each of its threads
# is (state, wait channel, kernel stack): a hang in the kernel and a spin in
# user space look different there.
watchdog() {
	i=0
	while [ -d "/proc/$1" ]; do
		if [ "$i" -ge "$2" ]; then
			for t in /proc/"$1"/task/*; do
				echo "@@D|thread ${t##*/} $(cat "$t/comm" 2>/dev/null)" \
					"$(grep State: "$t/status" 2>/dev/null)" \
					"wchan=$(cat "$t/wchan" 2>/dev/null)" \
					"utime+stime=$(cut -d' ' -f14,15 "$t/stat" 2>/dev/null)"
				awk '{ print "@@D|    " $0 }' "$t/stack" 2>/dev/null
			done
			kill -KILL "$1"
			return
		fi
		sleep 1
		i=$((i + 1))
	done
}

dmesg -c > /dev/null 2>&1
echo "@@PGT-VM READY kernel=$(uname -r) arch=$(uname -m) cpus=$(nproc)" \
	"hugepages=$(cat /proc/sys/vm/nr_hugepages) up_cs=$(uptime_cs)"

while IFS='|' read -r name tmo envs cmd; do
	case "$name" in ''|'#'*) continue ;; esac
	echo "@@PGT-VM BEGIN $name"
	t0=$(uptime_cs)
	# shellcheck disable=SC2086 # word splitting of envs and cmd is wanted
	env $envs $cmd > /tmp/out 2> /tmp/err < /dev/null &
	pid=$!
	watchdog "$pid" "$tmo" &
	wait "$pid"
	rc=$?
	t1=$(uptime_cs)
	awk '{ print "@@O|" $0 }' /tmp/out
	awk '{ print "@@E|" $0 }' /tmp/err
	dmesg -c 2>/dev/null | awk '{ print "@@K|" $0 }'
	echo "@@PGT-VM END $name rc=$rc cs=$((t1 - t0))"
	rm -f /tmp/out /tmp/err
	# A program may leave hugepages in files; give them back for the next.
	rm -rf /dev/hugepages/* /dev/shm/* 2>/dev/null
done < /pgt/list

echo "@@PGT-VM DONE up_cs=$(uptime_cs)"
sync
poweroff -f
echo o > /proc/sysrq-trigger
