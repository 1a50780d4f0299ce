/* SPDX-License-Identifier: MIT */
/*
 * ktlsgw-bench and ktlsgw-bench-backend: shared pieces (not part of the gateway).
 *
 * Body pattern: the backend's GET /size/N body, the bench's upload bodies and the stream
 * payload are the byte sequence bench_pattern(i) = BENCH_PATTERN[i % BENCH_PATTERN_LEN], so
 * either side can check any slice of it with one memcmp against bench_pat_at(off).
 *
 * Latency histogram: log-linear buckets in nanoseconds as HdrHistogram lays them out
 * (values below 2^11 exact, then 1024 sub-buckets per power of two: relative error
 * below 0.1 %), up to 2^42 ns (about 73 minutes; larger values land in the last bucket).
 */
#ifndef GW_BENCH_H
#define GW_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_PATTERN "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
#define BENCH_PATTERN_LEN 64
/* bench_pat_at(off) is valid for BENCH_PAT_SPAN bytes */
#define BENCH_PAT_SPAN (256 * 1024)

/* pointer to BENCH_PAT_SPAN bytes of the pattern starting at stream offset @off */
const unsigned char *bench_pat_at(uint64_t off);
/* 0 if @len bytes at @p are the pattern from stream offset @off */
int bench_pat_check(const void *p, size_t len, uint64_t off);

/* "64", "16k", "1m", "2g" (powers of 1024) -> 0 / -EINVAL */
int bench_parse_size(const char *s, uint64_t *out);

/*
 * Is header line @line (@len bytes, no CRLF) the header @name (lowercase,
 * matched without case)? Then *@val / *@vlen is its value, blanks trimmed.
 */
bool bench_hdr_is(const char *line, size_t len, const char *name, const char **val, size_t *vlen);

/*
 * ktlsgw-bench: decode EC public keys with OpenSSL's legacy EC method, not the
 * 3.0 provider decoders (src/bench/ec_legacy.c). false if it could not be set.
 */
bool bench_ec_legacy(void);

#define HIST_SUB_BITS 10
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP 31
#define HIST_BUCKETS ((HIST_MAX_EXP + 2) * HIST_SUB)

struct bench_hist {
	uint64_t count;
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint64_t b[HIST_BUCKETS];
};

void hist_init(struct bench_hist *h);
void hist_add(struct bench_hist *h, uint64_t ns);
void hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* value at quantile @q (0..1): the midpoint of the bucket holding that rank; 0 if empty */
uint64_t hist_quantile(const struct bench_hist *h, double q);
unsigned int hist_index(uint64_t ns);
/* lowest value of bucket @i, and its width */
uint64_t hist_low(unsigned int i, uint64_t *width);

#endif /* GW_BENCH_H */
