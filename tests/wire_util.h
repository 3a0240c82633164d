/* SPDX-License-Identifier: MIT */
/*
 * wire_util.h - raw frames to the real peerdistd for the administration and activation tests:
 * connect, Hello, one request and its reply, and the consuming calls that put content in the
 * cache. Nothing here asserts: a forked child that dropped its privileges uses them too, and
 * reports through its exit status.
 */
#ifndef PEERDIST_TEST_WIRE_UTIL_H
#define PEERDIST_TEST_WIRE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* A connected socket (receive timeout 30 s), or -1. */
int wu_connect(const char *sock);
/* Sends req (its id set here) and reads its reply; NULL if the connection failed. */
Peerdist__Reply *wu_call(int fd, Peerdist__Request *req);
/* The two halves of wu_call, to have several requests in flight: the id sent (0 on failure),
 * and the next reply (NULL on failure). */
uint64_t wu_send(int fd, Peerdist__Request *req);
Peerdist__Reply *wu_recv(int fd);
/* Opens a handle of tag and completes ci on it: the handle, or 0. */
uint64_t wu_open_ci(int fd, const uint8_t tag[16], const uint8_t *ci, size_t cilen);
/* The reply's status, or UINT32_MAX if none came; frees the reply. */
uint32_t wu_status(int fd, Peerdist__Request *req);
/* wu_connect, then Hello (version 1); -1 if either failed. */
int wu_open(const char *sock);
/* Opens a content handle with tag, adds the content information and completes it, then adds
 * data[0, len): the first status other than ERROR_SUCCESS, else ERROR_SUCCESS. */
uint32_t wu_add_content(int fd, const uint8_t tag[16], const uint8_t *ci, size_t cilen,
    const uint8_t *data, size_t len);
/* A read of [off, off + max) on a fresh handle of tag for ci: the status, and the reply's
 * length (missing bytes, or bytes read) in *len. */
uint32_t wu_read(int fd, const uint8_t tag[16], const uint8_t *ci, size_t cilen, uint64_t off,
    uint32_t max, uint64_t *len);
/* An AdminFlushRequest: the status; its FlushReply's figures in *labels and *bytes. */
uint32_t wu_admin_flush(int fd, int all, uint32_t uid, const uint8_t *tag, size_t taglen,
    uint64_t *labels, uint64_t *bytes);
/* A KeyRequest; the reply (NULL if none came): free it with peerdist__reply__free_unpacked. */
Peerdist__Reply *wu_key(int fd, Peerdist__KeyOp op, const uint8_t *secret, size_t len);

#endif
