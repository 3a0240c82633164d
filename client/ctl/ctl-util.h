/* SPDX-License-Identifier: MIT */
/*
 * ctl-util.h - small pieces every peerdistctl sub-command uses: exit codes, progress on a
 * terminal, output files replaced only on success, number, size and duration syntax, hex,
 * JSON strings, times and content tags. Plain libc: no daemon connection here.
 */
#ifndef PEERDIST_CTL_UTIL_H
#define PEERDIST_CTL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <peerdist.h>

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2

/* A progress line appears once work has lasted this long, and is redrawn at most this often. */
#define CTL_PROGRESS_DELAY_MS 500
#define CTL_PROGRESS_EVERY_MS 200

/* ---- progress on a terminal (stderr); silent otherwise ---- */

struct ctl_progress {
    const char *what; /* "reading", "injecting", ... */
    uint64_t total;   /* bytes expected; 0 if unknown */
    bool tty;         /* stderr is a terminal */
    bool drawn;       /* a progress line is on the screen */
    int64_t start_ms, last_ms;
};

void ctl_progress_start(struct ctl_progress *p, const char *what, uint64_t total);
/* done bytes so far: redraws "what  42%  1.2 GiB of 3.0 GiB  110 MiB/s  0:12 left". */
void ctl_progress_update(struct ctl_progress *p, uint64_t done);
/* Clears the progress line, if any (before an error message, say). */
void ctl_progress_clear(struct ctl_progress *p);
/*
 * The end: on a terminal, clears the line and prints one summary line, the formatted text
 * followed by ": SIZE in T s (RATE)". Nothing when stderr is not a terminal.
 */
void ctl_progress_done(struct ctl_progress *p, uint64_t done, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- output files: a temporary file beside OUT, renamed over it only on success ---- */

#define CTL_OUT_PRIVATE 1u   /* mode 0600 whatever the umask (a secret) */
#define CTL_OUT_NOREPLACE 2u /* fail with EEXIST rather than replace an existing OUT */

struct ctl_out {
    const char *path; /* what the user named; NULL: standard output */
    char *target;     /* what the rename replaces (a symbolic link followed) */
    char *tmp;        /* the temporary file, or NULL when writing straight to target */
    int fd;
    bool seekable; /* a regular file: pwrite and holes work */
    unsigned flags;
};

/*
 * Opens OUT for writing: a new temporary file in OUT's directory when OUT is (or will be) a
 * regular file; OUT itself when it exists and is something else (/dev/null, a FIFO); standard
 * output when path is NULL. 0, or -1 with errno (EEXIST with CTL_OUT_NOREPLACE).
 */
int ctl_out_open(struct ctl_out *o, const char *path, unsigned flags);
/* Success: sets the length (if >= 0), syncs, renames over OUT. 0, or -1 with errno (OUT as before). */
int ctl_out_commit(struct ctl_out *o, int64_t length);
/* Failure: removes the temporary file; OUT is untouched. Safe after commit and twice. */
void ctl_out_abort(struct ctl_out *o);

/* ---- syntax ---- */

/* Decimal digits only (no sign, no space), at most max. 0 or -1. */
int ctl_parse_u64(const char *s, uint64_t max, uint64_t *v);
/* A cache size for `cache set size`: "N%" (1..100) or bytes with K, M, G or T (>= min). */
int ctl_check_cache_size(const char *s, uint64_t min);
/* A duration for `cache set max-age`: N, Ns, Nm, Nh or Nd, positive, at most max_s seconds. */
int ctl_check_duration(const char *s, uint64_t max_s, uint64_t *seconds);

int ctl_write_all(int fd, const uint8_t *p, size_t len);
int ctl_hexval(int c);
/* Even-length hex into out (at most cap bytes); 0 or -1. */
int ctl_unhex(const char *hex, uint8_t *out, size_t cap, size_t *len);
/*
 * A content tag: 32 hex digits are the 16 bytes in order; a GUID string
 * {00112233-4455-6677-8899-aabbccddeeff} (braces optional) is read as Windows
 * lays a GUID out in memory, the first three groups little-endian (DESIGN.md).
 */
int ctl_parse_tag(const char *s, PEERDIST_CONTENT_TAG *tag);
void ctl_format_tag(const PEERDIST_CONTENT_TAG *tag, char out[33]);
/* The same tag as a GUID string with braces, the inverse of ctl_parse_tag's GUID form. */
void ctl_format_guid(const PEERDIST_CONTENT_TAG *tag, char out[39]);

/* ---- text ---- */

/* "512 B", "3.0 MiB", "1.2 GiB". */
const char *ctl_human_bytes(uint64_t n, char buf[24]);
/* Unix seconds as "2026-12-02T09:47:12Z"; "-" for 0 (never). */
const char *ctl_utc(uint64_t secs, char buf[32]);
/* s as a JSON string literal. */
void ctl_json_str(FILE *f, const char *s);

#endif
