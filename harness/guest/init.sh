#!/bin/busybox sh
# pte-harness guest init: mount what the tests read, then serve a shell on ttyS1.
/bin/busybox --install -s /bin
export PATH=@GUEST_PATH@
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /tmp && mount -t tmpfs tmpfs /tmp 2>/dev/null
case " $(cat /proc/cmdline) " in
*" pte_harness.bare "*)
    # Benchmark reference: reach userspace, say so, power off.
    echo @READY@ > /dev/ttyS0
    reboot -f ;;
*" pte_harness.ssh "*)
    # The ssh transport: lo and eth0 (QEMU user networking), the client key from the
    # command line, dropbear on port 22 logging to the console. pte_harness.sshd=off
    # leaves sshd out (the harness's own test of a guest whose sshd never starts).
    mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
    ip link set lo up
    ip addr add @GUEST_IP@/@GUEST_NET_PREFIX@ dev eth0
    ip link set eth0 up
    ip route add default via @HOST_IP@
    key=
    for arg in $(cat /proc/cmdline); do
        case $arg in pte_harness.authkey=*) key=${arg#*=} ;; esac
    done
    (umask 077; mkdir -p /root/.ssh; echo "ssh-ed25519 $key pte-harness" > /root/.ssh/authorized_keys)
    case " $(cat /proc/cmdline) " in
    *" pte_harness.sshd=off "*)
        echo "pte-harness: sshd=off, dropbear not started"
        while :; do sleep 3600; done ;;
    esac
    echo "pte-harness: starting dropbear"
    dropbear -F -E -s -j -k -p 22 -r @GUEST_HOST_KEY@ -P /tmp/dropbear.pid
    echo "pte-harness: dropbear exited with status $?" ;;
*" pte_harness.interactive "*)
    echo "pte-harness guest shell; 'exit' powers the guest off" > /dev/ttyS1
    setsid -c sh -l < /dev/ttyS1 > /dev/ttyS1 2>&1 ;;
*)
    # The port stays open from stty to the shell, so no input is dropped in between;
    # the shell reads commands as a script (not interactive: no prompt, no line editing).
    setsid sh -c 'stty -echo -onlcr; echo @READY@; exec sh /dev/ttyS1' \
        < /dev/ttyS1 > /dev/ttyS1 2>&1 ;;
esac
reboot -f
