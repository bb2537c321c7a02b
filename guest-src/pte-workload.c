// SPDX-License-Identifier: GPL-2.0
/*
 * pte-workload: guest-side memory workloads for the pte-harness kernel tests.
 *
 *   pte-workload fragment MB STRIDE
 *	Map and touch MB MiB of anonymous memory, then give back every STRIDE-th
 *	page (munmap), leaving single free pages scattered over the movable
 *	pageblocks that hold the rest (a STRIDE above 2 leaves each of them less
 *	than half free, so an unmovable allocation falling back to one does not
 *	claim it). Prints "ready" and holds the rest until killed (one mapping
 *	per hole: keep MB * 256 / STRIDE under vm.max_map_count).
 *   pte-workload pipes N STRIDE
 *	Fill N pipes with one page each (unmovable kernel pages, taken in order),
 *	then close every STRIDE-th pipe: single free unmovable pages scattered over
 *	many 2M regions, where kernel allocations (GFP_KERNEL) look first. Prints
 *	"ready" and holds the other pipes until killed.
 *   pte-workload pgtables NPROC MB
 *	Fork NPROC children; each maps MB MiB and touches one byte every 2 MiB,
 *	so that each touch needs a page-table page of its own. Prints "ready"
 *	once all children are done touching, and holds until killed (the
 *	children exit with it).
 *   pte-workload pressure MB
 *	Map and touch MB MiB (to push the kernel into reclaim), print "done", exit.
 *   pte-workload hold MB
 *	The same, but print "ready" and hold the memory until killed, so that
 *	what reclaim gave up can be read while the memory is still in use.
 *   pte-workload secrets PAGES ROUNDS
 *	ROUNDS times: create a memfd_secret() of PAGES pages, map it, write to
 *	every page (each write faults in a page the kernel takes out of its
 *	direct map), unmap it and close it. Prints "done".
 *   pte-workload secret-hold PAGES
 *	One such secret, kept mapped: prints "pfn 0x..." for each of its pages
 *	(from /proc/self/pagemap), then "ready", and holds it until killed.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define MIB (1UL << 20)

static char *map(unsigned long bytes)
{
	char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

static void hold(void)
{
	for (;;)
		pause();
}

static int fragment(unsigned long mb, unsigned long stride)
{
	unsigned long bytes = mb * MIB, off;
	char *p = map(bytes);

	for (off = 0; off < bytes; off += PAGE)
		p[off] = 1;
	/* munmap(), not madvise(): tinyconfig has no ADVISE_SYSCALLS. */
	for (off = 0; off < bytes; off += stride * PAGE) {
		if (munmap(p + off, PAGE)) {
			perror("munmap");
			return 2;
		}
	}
	printf("ready\n");
	fflush(stdout);
	hold();
	return 0;
}

static int pipes(unsigned long n, unsigned long stride)
{
	struct rlimit lim = { 2 * n + 64, 2 * n + 64 };
	static char page[PAGE];
	int (*fds)[2] = calloc(n, sizeof(*fds));
	unsigned long i;

	if (!fds || setrlimit(RLIMIT_NOFILE, &lim)) {
		perror("pipes setup");
		return 2;
	}
	memset(page, 1, sizeof(page));
	for (i = 0; i < n; i++) {
		if (pipe(fds[i]) || write(fds[i][1], page, PAGE) != PAGE) {
			perror("pipe");
			return 2;
		}
	}
	for (i = 0; i < n; i += stride) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
	printf("ready\n");
	fflush(stdout);
	hold();
	return 0;
}

static void stop_children(int sig)
{
	(void)sig;
	kill(0, SIGKILL);
}

static int pgtables(unsigned long nproc, unsigned long mb)
{
	int ready[2];
	unsigned long i;
	char c;

	if (pipe(ready)) {
		perror("pipe");
		return 2;
	}
	setpgid(0, 0);
	for (i = 0; i < nproc; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0) {
			unsigned long bytes = mb * MIB, off;
			char *p = map(bytes);

			for (off = 0; off < bytes; off += 2 * MIB)
				p[off] = 1;
			if (write(ready[1], "x", 1) != 1)
				_exit(2);
			hold();
		}
	}
	for (i = 0; i < nproc; i++)
		if (read(ready[0], &c, 1) != 1)
			return 2;
	signal(SIGTERM, stop_children);
	printf("ready\n");
	fflush(stdout);
	hold();
	return 0;
}

static void touch(unsigned long mb)
{
	unsigned long bytes = mb * MIB, off;
	char *p = map(bytes);

	for (off = 0; off < bytes; off += PAGE)
		p[off] = 1;
}

static int pressure(unsigned long mb)
{
	touch(mb);
	printf("done\n");
	return 0;
}

static int hold_memory(unsigned long mb)
{
	touch(mb);
	printf("ready\n");
	fflush(stdout);
	hold();
	return 0;
}

#ifndef __NR_memfd_secret
#define __NR_memfd_secret 447	/* x86_64 */
#endif

/* A memfd_secret() of @pages pages, mapped, every page written. */
static char *secret(unsigned long pages, int *fdp)
{
	unsigned long off;
	int fd = syscall(__NR_memfd_secret, 0);
	char *p;

	if (fd < 0) {
		perror("memfd_secret (CONFIG_SECRETMEM, secretmem.enable?)");
		exit(2);
	}
	if (ftruncate(fd, pages * PAGE)) {
		perror("ftruncate");
		exit(2);
	}
	p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap secret");
		exit(2);
	}
	for (off = 0; off < pages * PAGE; off += PAGE)
		p[off] = 1;
	*fdp = fd;
	return p;
}

static int secrets(unsigned long pages, unsigned long rounds)
{
	unsigned long i;
	int fd;

	for (i = 0; i < rounds; i++) {
		char *p = secret(pages, &fd);

		munmap(p, pages * PAGE);
		close(fd);
	}
	printf("done\n");
	return 0;
}

static int secret_hold(unsigned long pages)
{
	int fd, pagemap = open("/proc/self/pagemap", O_RDONLY);
	char *p = secret(pages, &fd);
	unsigned long i;
	uint64_t entry;

	if (pagemap < 0) {
		perror("/proc/self/pagemap");
		return 2;
	}
	for (i = 0; i < pages; i++) {
		off_t at = ((uintptr_t)p / PAGE + i) * sizeof(entry);

		if (pread(pagemap, &entry, sizeof(entry), at) != sizeof(entry)) {
			perror("pagemap");
			return 2;
		}
		/* Bit 63: present; bits 0-54: the pfn (zero without CAP_SYS_ADMIN). */
		printf("pfn 0x%llx present %d\n",
		       (unsigned long long)(entry & ((1ULL << 55) - 1)),
		       (int)(entry >> 63));
	}
	printf("ready\n");
	fflush(stdout);
	hold();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "fragment"))
		return fragment(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "pipes"))
		return pipes(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "pgtables"))
		return pgtables(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
	if (argc == 3 && !strcmp(argv[1], "pressure"))
		return pressure(strtoul(argv[2], NULL, 0));
	if (argc == 3 && !strcmp(argv[1], "hold"))
		return hold_memory(strtoul(argv[2], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "secrets"))
		return secrets(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
	if (argc == 3 && !strcmp(argv[1], "secret-hold"))
		return secret_hold(strtoul(argv[2], NULL, 0));
	fprintf(stderr, "usage: pte-workload fragment MB STRIDE | pipes N STRIDE | pgtables NPROC MB | pressure MB | hold MB | secrets PAGES ROUNDS | secret-hold PAGES\n");
	return 2;
}
