/* A per-CPU token bucket: at most RATE events per second, bursts of up to one second's worth.
 * Shared by the rate limits of the watch events (watch.h) and the packet-ins (packet_in.h).
 *
 * Tokens are kept in ns units (one event = BUCKET_NS tokens), so a refill is one multiply and
 * no division: rate * BUCKET_NS must fit a u64, which caps RATE at 1e9 (the daemon checks it).
 */
#ifndef VSW_BUCKET_H
#define VSW_BUCKET_H

#include <uapi/linux/bpf.h>

#define BUCKET_NS 1000000000ULL

struct token_bucket {
	__u64 tokens;
	__u64 last_ns;
};

/* Takes one event's tokens at time NOW (bpf_ktime_get_ns): 1 if the event may go, 0 if the
 * rate limit refuses it. */
static __always_inline int bucket_take(struct token_bucket *b, __u64 rate, __u64 now)
{
	__u64 cap = rate * BUCKET_NS, elapsed = now - b->last_ns, tokens;

	b->last_ns = now;
	tokens = elapsed >= BUCKET_NS ? cap : b->tokens + elapsed * rate;
	if (tokens > cap)
		tokens = cap;
	if (tokens < BUCKET_NS) {
		b->tokens = tokens;
		return 0;
	}
	b->tokens = tokens - BUCKET_NS;
	return 1;
}

#endif
