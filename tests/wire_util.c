/* SPDX-License-Identifier: MIT */
/*
 * wire_util.c - raw frames to the real peerdistd (wire_util.h).
 */
#include "wire_util.h"

#include <peerdist.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* Atomic: tests send from several threads. */
static _Atomic uint64_t next_id = 1;

int wu_connect(const char *sock)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sun.sun_path))
        return -1;
    memcpy(sun.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

uint64_t wu_send(int fd, Peerdist__Request *req)
{
    req->id = atomic_fetch_add(&next_id, 1);
    size_t n = frame_size(&req->base);
    uint8_t *buf = malloc(n);
    int rc = !buf || frame_pack(&req->base, buf) != n ? -1 : send_all(fd, buf, n);
    free(buf);
    return rc == 0 ? req->id : 0;
}

Peerdist__Reply *wu_recv(int fd)
{
    uint8_t hdr[4];
    if (recv(fd, hdr, 4, MSG_WAITALL) != 4)
        return NULL;
    uint32_t len = frame_header_length(hdr);
    uint8_t *body = malloc(len ? len : 1);
    if (!body || recv(fd, body, len, MSG_WAITALL) != (ssize_t)len) {
        free(body);
        return NULL;
    }
    Peerdist__Reply *r = peerdist__reply__unpack(NULL, len, body);
    free(body);
    return r;
}

Peerdist__Reply *wu_call(int fd, Peerdist__Request *req)
{
    uint64_t id = wu_send(fd, req);
    if (!id)
        return NULL;
    for (;;) {
        Peerdist__Reply *r = wu_recv(fd);
        if (!r || r->id == id)
            return r;
        peerdist__reply__free_unpacked(r, NULL); /* a notice (id 0): not ours */
    }
}

uint32_t wu_status(int fd, Peerdist__Request *req)
{
    Peerdist__Reply *r = wu_call(fd, req);
    if (!r)
        return UINT32_MAX;
    uint32_t s = r->status;
    peerdist__reply__free_unpacked(r, NULL);
    return s;
}

int wu_open(const char *sock)
{
    int fd = wu_connect(sock);
    if (fd < 0)
        return -1;
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.min_version = h.max_version = 1;
    h.software = "peerdist tests";
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    if (wu_status(fd, &req) != ERROR_SUCCESS) {
        close(fd);
        return -1;
    }
    return fd;
}

uint64_t wu_open_ci(int fd, const uint8_t tag[16], const uint8_t *ci, size_t cilen)
{
    Peerdist__OpenContentRequest o = PEERDIST__OPEN_CONTENT_REQUEST__INIT;
    o.tag.data = (uint8_t *)tag;
    o.tag.len = 16;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT;
    req.open_content = &o;
    Peerdist__Reply *r = wu_call(fd, &req);
    if (!r || r->status != ERROR_SUCCESS || r->body_case != PEERDIST__REPLY__BODY_OPEN_CONTENT) {
        if (r)
            peerdist__reply__free_unpacked(r, NULL);
        return 0;
    }
    uint64_t h = r->open_content->handle;
    peerdist__reply__free_unpacked(r, NULL);
    Peerdist__AddContentInfoRequest a = PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
    a.handle = h;
    a.data.data = (uint8_t *)ci;
    a.data.len = cilen;
    Peerdist__Request add = PEERDIST__REQUEST__INIT;
    add.body_case = PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO;
    add.add_content_info = &a;
    Peerdist__CompleteContentInfoRequest cc = PEERDIST__COMPLETE_CONTENT_INFO_REQUEST__INIT;
    cc.handle = h;
    Peerdist__Request done = PEERDIST__REQUEST__INIT;
    done.body_case = PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO;
    done.complete_content_info = &cc;
    if (wu_status(fd, &add) != ERROR_SUCCESS || wu_status(fd, &done) != ERROR_SUCCESS)
        return 0;
    return h;
}

uint32_t wu_add_content(int fd, const uint8_t tag[16], const uint8_t *ci, size_t cilen,
    const uint8_t *data, size_t len)
{
    uint64_t h = wu_open_ci(fd, tag, ci, cilen);
    if (!h)
        return ERROR_INVALID_HANDLE;
    Peerdist__AddDataRequest a = PEERDIST__ADD_DATA_REQUEST__INIT;
    a.handle = h;
    a.data.data = (uint8_t *)data;
    a.data.len = len;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_ADD_DATA;
    req.add_data = &a;
    return wu_status(fd, &req);
}

uint32_t wu_read(int fd, const uint8_t tag[16], const uint8_t *ci, size_t cilen, uint64_t off,
    uint32_t max, uint64_t *len)
{
    uint64_t h = wu_open_ci(fd, tag, ci, cilen);
    if (!h)
        return ERROR_INVALID_HANDLE;
    Peerdist__ReadRequest a = PEERDIST__READ_REQUEST__INIT;
    a.handle = h;
    a.offset = off;
    a.max_bytes = max;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_READ;
    req.read = &a;
    Peerdist__Reply *r = wu_call(fd, &req);
    if (!r)
        return UINT32_MAX;
    uint32_t s = r->status;
    *len = r->body_case == PEERDIST__REPLY__BODY_READ
        ? (r->read->data.len ? r->read->data.len : r->read->length)
        : 0;
    peerdist__reply__free_unpacked(r, NULL);
    return s;
}

uint32_t wu_admin_flush(int fd, int all, uint32_t uid, const uint8_t *tag, size_t taglen,
    uint64_t *labels, uint64_t *bytes)
{
    Peerdist__AdminFlushRequest f = PEERDIST__ADMIN_FLUSH_REQUEST__INIT;
    f.all = all;
    f.uid = uid;
    f.tag.data = (uint8_t *)tag;
    f.tag.len = taglen;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_ADMIN_FLUSH;
    req.admin_flush = &f;
    Peerdist__Reply *r = wu_call(fd, &req);
    if (!r)
        return UINT32_MAX;
    uint32_t s = r->status;
    *labels = *bytes = UINT64_MAX;
    if (r->body_case == PEERDIST__REPLY__BODY_FLUSH) {
        *labels = r->flush->labels_removed;
        *bytes = r->flush->bytes_freed;
    }
    peerdist__reply__free_unpacked(r, NULL);
    return s;
}

Peerdist__Reply *wu_key(int fd, Peerdist__KeyOp op, const uint8_t *secret, size_t len)
{
    Peerdist__KeyRequest k = PEERDIST__KEY_REQUEST__INIT;
    k.op = op;
    k.secret.data = (uint8_t *)secret;
    k.secret.len = len;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_KEY;
    req.key = &k;
    return wu_call(fd, &req);
}
