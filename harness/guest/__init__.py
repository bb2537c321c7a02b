"""Guest stages: initramfs (image) -> QEMU (vm) -> a booted session with its transport
(serial: a shell on ttyS1; ssh: dropbear) -> crash checks on the kernel log."""
