/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by every userspace module: array sizes, branch hints,
 * printf attributes and a growable byte buffer used by the relay and the
 * identity renderer.
 */
#ifndef GW_COMMON_H
#define GW_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define __printf(a, b) __attribute__((format(printf, a, b)))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define GW_VERSION "0.1.0"

/*
 * A growable byte buffer. Bytes live in data[off, len); buf_consume() moves
 * off forward and buf_compact() reclaims the consumed prefix.
 */
struct buf {
	char *data;
	size_t off;
	size_t len;
	size_t cap;
};

/* Ensure room for @extra more bytes after len. Returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Append @n bytes. Returns 0 or -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
/* Append a NUL-terminated string (without the NUL). Returns 0 or -ENOMEM. */
int buf_puts(struct buf *b, const char *s);
/* printf into the buffer (no NUL counted in len). Returns 0 or -ENOMEM. */
int buf_printf(struct buf *b, const char *fmt, ...) __printf(2, 3);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __printf(2, 0);
/* Drop @n bytes from the front of the readable region. */
void buf_consume(struct buf *b, size_t n);
/* Readable bytes. */
static inline size_t buf_avail(const struct buf *b)
{
	return b->len - b->off;
}
static inline char *buf_head(const struct buf *b)
{
	return b->data + b->off;
}
/* Forget the content, keep the allocation. */
void buf_reset(struct buf *b);
/* Release the allocation; accepts a zeroed buffer. */
void buf_free(struct buf *b);
/* Return a malloc'd NUL-terminated copy of the readable bytes, or NULL. */
char *buf_strdup(const struct buf *b);

#endif /* GW_COMMON_H */
