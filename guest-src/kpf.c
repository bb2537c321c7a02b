// SPDX-License-Identifier: GPL-2.0
/*
 * kpf BIT: print the page frames whose /proc/kpageflags entry has flag BIT set
 * (include/uapi/linux/kernel-page-flags.h: 10 BUDDY, 26 PGTABLE, ...), as
 * "pfns START END" lines of consecutive frames (END exclusive), then
 * "pfns-total N". The pte-harness uses it as evidence the pte-mapped cache does
 * not control: the kernel's own page flags, read by a user program.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK 4096

int main(int argc, char **argv)
{
	unsigned long long flags[CHUNK];
	unsigned long pfn = 0, start = 0, total = 0;
	int fd, bit, in_run = 0;
	ssize_t got;

	if (argc != 2) {
		fprintf(stderr, "usage: kpf BIT\n");
		return 2;
	}
	bit = atoi(argv[1]);
	fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0) {
		perror("/proc/kpageflags");
		return 2;
	}
	while ((got = read(fd, flags, sizeof(flags))) > 0) {
		for (ssize_t i = 0; i < got / 8; i++, pfn++) {
			int set = (flags[i] >> bit) & 1;

			if (set && !in_run)
				start = pfn;
			if (!set && in_run)
				printf("pfns %lu %lu\n", start, pfn);
			in_run = set;
			total += set;
		}
	}
	if (got < 0) {
		perror("read /proc/kpageflags");
		return 2;
	}
	if (in_run)
		printf("pfns %lu %lu\n", start, pfn);
	printf("pfns-total %lu\n", total);
	return 0;
}
