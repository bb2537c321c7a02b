#!/bin/sh
# CC for kernel builds: gcc through ccache, except for assembler sources (*.S).
# The harness runs ccache in depend mode, which does not see an .incbin: for
# arch/x86/boot/compressed/piggy.S (".incbin vmlinux.bin.xz" and two lengths)
# it handed back the piggy.o of an older build whose compressed kernel had the
# same lengths, and so a bzImage holding an older kernel.
for arg; do
	case $arg in
	*.S) exec gcc "$@" ;;
	esac
done
exec ccache gcc "$@"
