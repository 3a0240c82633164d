/* SPDX-License-Identifier: MIT */
/* ci-stream.c - streaming parser: content information arrives in chunks of any size
 * (AddContentInformation). The version and hash algorithm are judged as soon as their bytes
 * are in; the rest when the caller finishes, by the whole-buffer parser, so both agree. */
#include "ci-internal.h"

#include <stdlib.h>
#include <string.h>

#define CI_STREAM_INITIAL_CAP 4096u

struct ci_stream {
    uint8_t *buf;
    size_t len, cap, max;
    int version; /* 0 until the two version bytes are in */
    enum ci_hash_alg alg;
    struct ci_error err; /* sticky once err.code is set */
};

struct ci_stream *ci_stream_new(size_t max_bytes)
{
    struct ci_stream *st = calloc(1, sizeof(*st));

    if (st)
        st->max = max_bytes ? max_bytes : CI_STREAM_DEFAULT_MAX;
    return st;
}

void ci_stream_free(struct ci_stream *st)
{
    if (!st)
        return;
    free(st->buf);
    free(st);
}

int ci_stream_version(const struct ci_stream *st)
{
    return st->version;
}

static DWORD ci_stream_result(const struct ci_stream *st, struct ci_error *err)
{
    if (err)
        *err = st->err;
    return st->err.code;
}

static int ci_stream_grow(struct ci_stream *st, size_t need)
{
    size_t cap = st->cap ? st->cap : CI_STREAM_INITIAL_CAP;
    uint8_t *buf;

    while (cap < need)
        cap = cap > st->max / 2 ? st->max : cap * 2;
    buf = realloc(st->buf, cap);
    if (!buf)
        return -1;
    st->buf = buf;
    st->cap = cap;
    return 0;
}

/* Early verdicts on what is in so far: the version, then the hash algorithm. */
static void ci_stream_early_checks(struct ci_stream *st)
{
    if (st->version == 0 && st->len >= 2 &&
        ci_check_version(st->buf, st->len, &st->version, &st->err))
        return;
    if (st->version != 0)
        ci_check_algo(st->version, st->buf, st->len, &st->alg, &st->err);
}

DWORD ci_stream_feed(struct ci_stream *st, const void *data, size_t len, struct ci_error *err)
{
    if (st->err.code)
        return ci_stream_result(st, err);
    if (len > st->max - st->len) {
        ci_fail(&st->err, PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO, st->max,
            "content information longer than the %zu-byte limit", st->max);
        return ci_stream_result(st, err);
    }
    if (st->len + len > st->cap && ci_stream_grow(st, st->len + len) < 0) {
        ci_fail(&st->err, ERROR_NOT_ENOUGH_MEMORY, st->len, "out of memory");
        return ci_stream_result(st, err);
    }
    if (len)
        memcpy(st->buf + st->len, data, len);
    st->len += len;
    ci_stream_early_checks(st);
    return ci_stream_result(st, err);
}

DWORD ci_stream_finish(struct ci_stream *st, struct ci_info **out, struct ci_error *err)
{
    *out = NULL;
    if (st->err.code)
        return ci_stream_result(st, err);
    ci_parse(st->buf ? st->buf : (const uint8_t *)"", st->len, out, &st->err);
    return ci_stream_result(st, err);
}
