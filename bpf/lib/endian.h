/* Byte order: host <-> network (big-endian) conversions, right on either byte order.
 *
 * As libbpf's bpf_endian.h, but named vsw_*: bcc's helpers.h already defines functions named
 * bpf_htons() and friends, which always swap (they assume a little-endian CPU). clang folds a
 * conversion of a constant into a constant, so `proto == vsw_htons(ETH_P_IP)` costs nothing. */
#ifndef VSW_ENDIAN_H
#define VSW_ENDIAN_H

#include <linux/types.h>

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define vsw_htons(x) ((__be16)__builtin_bswap16(x))
#define vsw_ntohs(x) ((__u16)__builtin_bswap16(x))
#define vsw_htonl(x) ((__be32)__builtin_bswap32(x))
#define vsw_ntohl(x) ((__u32)__builtin_bswap32(x))
#elif __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define vsw_htons(x) ((__be16)(x))
#define vsw_ntohs(x) ((__u16)(x))
#define vsw_htonl(x) ((__be32)(x))
#define vsw_ntohl(x) ((__u32)(x))
#else
#error "__BYTE_ORDER__ is neither little nor big endian"
#endif

#endif
