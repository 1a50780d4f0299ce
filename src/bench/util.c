// SPDX-License-Identifier: MIT
/*
 * ktlsgw-bench shared helpers: the body pattern, sizes, the latency histogram.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw/bench.h"

static unsigned char pat_buf[BENCH_PAT_SPAN + BENCH_PATTERN_LEN];
static int pat_ready;

const unsigned char *bench_pat_at(uint64_t off)
{
	/* filled on first use by the main thread before any worker starts (bench_pat_at(0)) */
	if (!pat_ready) {
		for (size_t i = 0; i < sizeof(pat_buf); i++)
			pat_buf[i] = BENCH_PATTERN[i % BENCH_PATTERN_LEN];
		pat_ready = 1;
	}
	return pat_buf + off % BENCH_PATTERN_LEN;
}

int bench_pat_check(const void *p, size_t len, uint64_t off)
{
	const unsigned char *q = p;

	while (len) {
		size_t n = len < BENCH_PAT_SPAN ? len : BENCH_PAT_SPAN;

		if (memcmp(q, bench_pat_at(off), n))
			return -EBADMSG;
		q += n;
		off += n;
		len -= n;
	}
	return 0;
}

int bench_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned int shift = 0;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	default:
		break;
	}
	if (*end || (shift && v > (~0ULL >> shift)))
		return -EINVAL;
	*out = v << shift;
	return 0;
}

void hist_init(struct bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned int hist_index(uint64_t ns)
{
	unsigned int msb, e;

	if (ns < 2 * HIST_SUB)
		return (unsigned int)ns;
	msb = 63 - (unsigned int)__builtin_clzll(ns);
	e = msb - HIST_SUB_BITS;
	if (e > HIST_MAX_EXP)
		return HIST_BUCKETS - 1;
	return e * HIST_SUB + (unsigned int)(ns >> e);
}

uint64_t hist_low(unsigned int i, uint64_t *width)
{
	unsigned int e;

	if (i < 2 * HIST_SUB) {
		*width = 1;
		return i;
	}
	e = i / HIST_SUB - 1;
	*width = 1ULL << e;
	return (uint64_t)(i - e * HIST_SUB) << e;
}

void hist_add(struct bench_hist *h, uint64_t ns)
{
	h->b[hist_index(ns)]++;
	h->count++;
	h->sum += ns;
	if (ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
}

void hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
	for (unsigned int i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_quantile(const struct bench_hist *h, double q)
{
	uint64_t rank, seen = 0, w, v;

	if (!h->count)
		return 0;
	/* rank of the value at q: ceil(q * count), at least 1 */
	rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count)
		rank++;
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (unsigned int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			v = hist_low(i, &w) + w / 2;
			/* never outside what was recorded */
			if (v < h->min)
				v = h->min;
			if (v > h->max)
				v = h->max;
			return v;
		}
	}
	return h->max;
}

bool bench_hdr_is(const char *line, size_t len, const char *name, const char **val, size_t *vlen)
{
	size_t n = strlen(name);

	if (len <= n || strncasecmp(line, name, n) || line[n] != ':')
		return false;
	line += n + 1;
	len -= n + 1;
	while (len && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	*val = line;
	*vlen = len;
	return true;
}
