/* LD_PRELOAD shim for trafgen in bench/xdp_paths.py: its packet sockets get a send buffer of
 * $SNDBUF_BYTES (SO_SNDBUFFORCE; root), leaving the machine-wide net.core sysctls alone.
 *
 * Why: a veth whose peer runs XDP holds up to 256 skbs in its ring until NAPI takes them.
 * trafgen's TX_RING skbs stay charged to its socket meanwhile, and the default send buffer
 * (net.core.wmem_default, 208 KiB) holds about that many: trafgen's non-blocking flush then
 * fails with EAGAIN, which trafgen treats as fatal. With a larger buffer a full ring makes
 * the veth drop (counted as the sender's tx_dropped), as a NIC's full ring would.
 * Built at bench time: gcc -O2 -shared -fPIC -o sndbuf.so sndbuf.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol)
{
	static int (*real)(int, int, int);
	const char *want = getenv("SNDBUF_BYTES");
	int fd;

	if (!real)
		real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
	fd = real(domain, type, protocol);
	if (fd >= 0 && domain == AF_PACKET && want) {
		int bytes = atoi(want);

		setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes));
	}
	return fd;
}
