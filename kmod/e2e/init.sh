#!/bin/busybox sh
# /init of the test VM: mount what the scenarios need, run them, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
mkdir -p /etc
echo "root:x:0:0::/:/bin/sh" > /etc/passwd
echo "root:x:0:" > /etc/group
echo "kmod-e2e: guest up after $(cut -d' ' -f1 /proc/uptime) s"
sh /e2e/scenarios.sh
echo "kmod-e2e: exit $?"
poweroff -f
