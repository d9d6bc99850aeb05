/* A VM's side of a TAP for bench/xdp_paths.py: writes one frame over and over as fast as one
 * core can (gen), or reads and counts frames (sink). Compiled at bench time with gcc.
 *
 *   tapio gen  IFNAME CPU COUNTFILE FRAMEHEX   write FRAMEHEX (hex bytes) to TAP IFNAME
 *   tapio sink IFNAME CPU COUNTFILE            read frames from TAP IFNAME and count them
 *
 * The TAP is opened like QEMU opens it (IFF_TAP | IFF_NO_PI, O_NONBLOCK): only a non-blocking
 * writer gets tun's native XDP (tun_build_skb); a blocking one gets generic XDP on an skb.
 * The process pins itself to CPU, prints "ready" and runs until SIGINT/SIGTERM. COUNTFILE
 * (at least 16 bytes, made by the caller) is mapped shared: u64 frames written or read, then
 * u64 failed writes; the caller samples it while the process runs.
 *
 * The sink reads without blocking while frames come and sleeps in poll() after ~SPINS empty
 * reads in a row, so an idle sink costs nothing and a busy one takes no wakeups.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SPINS 20000

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int open_tap(const char *name)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);

	if (fd < 0)
		die("open /dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		die("TUNSETIFF");
	return fd;
}

static int parse_hex(const char *hex, unsigned char *out, int max)
{
	int n = 0;

	while (hex[0] && hex[1] && n < max) {
		unsigned int b;

		if (sscanf(hex, "%2x", &b) != 1)
			return -1;
		out[n++] = (unsigned char)b;
		hex += 2;
	}
	return n;
}

int main(int argc, char **argv)
{
	unsigned char frame[2048];
	volatile uint64_t *counts;
	struct sigaction sa;
	cpu_set_t cpus;
	int fd, cfd, len = 0, gen;

	if (argc < 5 || (strcmp(argv[1], "gen") && strcmp(argv[1], "sink")) ||
	    (!strcmp(argv[1], "gen") && argc < 6)) {
		fprintf(stderr, "usage: tapio gen|sink IFNAME CPU COUNTFILE [FRAMEHEX]\n");
		return 2;
	}
	gen = !strcmp(argv[1], "gen");
	if (gen && (len = parse_hex(argv[5], frame, sizeof(frame))) < 14) {
		fprintf(stderr, "tapio: FRAMEHEX must be an Ethernet frame in hex\n");
		return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(atoi(argv[3]), &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) < 0)
		die("sched_setaffinity");
	cfd = open(argv[4], O_RDWR);
	if (cfd < 0)
		die("open COUNTFILE");
	counts = mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	if (counts == MAP_FAILED)
		die("mmap COUNTFILE");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;  /* no SA_RESTART: a sleeping poll() returns */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	fd = open_tap(argv[2]);
	printf("ready\n");
	fflush(stdout);

	if (gen) {
		uint64_t ok = 0, failed = 0;

		while (!stop) {
			if (write(fd, frame, len) == len)
				counts[0] = ++ok;
			else
				counts[1] = ++failed;
		}
	} else {
		uint64_t got = 0;
		unsigned int empty = 0;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		while (!stop) {
			if (read(fd, frame, sizeof(frame)) > 0) {
				counts[0] = ++got;
				empty = 0;
			} else if (errno != EAGAIN && errno != EINTR) {
				die("read");
			} else if (++empty > SPINS) {
				poll(&pfd, 1, 200);
				empty = 0;
			}
		}
	}
	return 0;
}
