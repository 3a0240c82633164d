/* SPDX-License-Identifier: MIT */
/*
 * secret.c - loads, creates and replaces the server passphrase (see secret.h). The file is
 * always written atomically: temporary file, fsync, rename, fsync of the directory, so a
 * crash never leaves a truncated secret behind.
 */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "fsutil.h"
#include "log.h"

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *dir)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Writes the n bytes of key to path in dir: a temporary file of mode 0600 beside it, synced,
 * renamed over path, then the directory synced, so path holds the old secret or the new one,
 * whole, whatever happens.
 */
static int secret_write(const char *dir, const char *path, const uint8_t *key, size_t n)
{
    char tmp[PATH_MAX];
    int fd = -1, dfd = -1, rc = -1;
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
        return -1;
    fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0 || fchmod(fd, 0600) != 0 || write_all(fd, key, n) != 0 || fsync(fd) != 0) {
        log_error("server secret: cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) {
        log_error("server secret: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        log_error("server secret: cannot sync %s: %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (tmp[0])
        unlink(tmp);
    return rc;
}

/* Writes SECRET_GENERATED_BYTES random bytes to path. */
static int secret_create(const char *dir, const char *path)
{
    uint8_t key[SECRET_GENERATED_BYTES];
    if (RAND_bytes(key, sizeof(key)) != 1) {
        log_error("server secret: no random bytes from OpenSSL");
        return -1;
    }
    int rc = secret_write(dir, path, key, sizeof(key));
    OPENSSL_cleanse(key, sizeof(key));
    if (rc == 0)
        log_info("server secret: generated %zu random bytes in %s", sizeof(key), path);
    return rc;
}

/* Reads the whole file into buf (1..SECRET_MAX_BYTES bytes). Bytes read, or -1 (errno). */
static ssize_t secret_read(const char *path, uint8_t *buf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if (st.st_mode & 077)
        log_warn("server secret: %s is readable by others (mode %04o); it should be 0600", path,
            (unsigned)(st.st_mode & 07777));
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, SECRET_MAX_BYTES + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > SECRET_MAX_BYTES)
            break;
    }
    close(fd);
    if (n == 0 || n > SECRET_MAX_BYTES) {
        errno = n == 0 ? ENODATA : EFBIG;
        return -1;
    }
    return (ssize_t)n;
}

static int secret_path(const char *state_dir, char *path, size_t len)
{
    if (snprintf(path, len, "%s/" SECRET_FILE_NAME, state_dir) >= (int)len) {
        log_error("server secret: state directory path too long");
        return -1;
    }
    return 0;
}

int secret_load_raw(const char *state_dir, struct secret *out)
{
    char path[PATH_MAX];
    uint8_t buf[SECRET_MAX_BYTES + 1];
    if (secret_path(state_dir, path, sizeof(path)) != 0)
        return -1;
    if (make_dirs(state_dir) != 0) {
        log_error("server secret: cannot create %s: %s", state_dir, strerror(errno));
        return -1;
    }
    /* Whoever could write the directory could swap the secret, and with it every segment
     * secret (Kp) this server hands out. */
    if (fs_check_dir("state directory", state_dir) != 0)
        return -1;
    if (access(path, F_OK) != 0 && errno == ENOENT && secret_create(state_dir, path) != 0)
        return -1;
    ssize_t n = secret_read(path, buf);
    int err = errno;
    struct stat st;
    if (n < 0 && err == EACCES && stat(path, &st) == 0) {
        /* Most often a daemon started by hand as root made it before the service ran. */
        log_error("server secret: cannot read %s: it belongs to uid %u, mode %04o, and "
                  "peerdistd runs as uid %u (%s)",
            path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)geteuid(),
            st.st_uid == geteuid() ? "chmod 0600 it" : "chown it to that user");
        return -1;
    }
    if (n < 0) {
        log_error("server secret: cannot read %s: %s (must hold 1..%u bytes)", path, strerror(err),
            SECRET_MAX_BYTES);
        return -1;
    }
    memcpy(out->bytes, buf, (size_t)n);
    out->len = (size_t)n;
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

int secret_derive(const struct secret *s, struct ci_secret *ks_v1, struct ci_secret *ks_v2)
{
    if (ci_secret_from_passphrase(CI_HASH_SHA256, s->bytes, s->len, ks_v1) != 0 ||
        ci_secret_from_passphrase(CI_HASH_SHA512_TRUNC, s->bytes, s->len, ks_v2) != 0) {
        log_error("server secret: cannot derive keys");
        return -1;
    }
    return 0;
}

int secret_load(const char *state_dir, struct ci_secret *ks_v1, struct ci_secret *ks_v2)
{
    struct secret s;
    if (secret_load_raw(state_dir, &s) != 0)
        return -1;
    int rc = secret_derive(&s, ks_v1, ks_v2);
    if (rc == 0)
        log_info("server secret: %s/" SECRET_FILE_NAME " (%zu bytes)", state_dir, s.len);
    OPENSSL_cleanse(&s, sizeof(s));
    return rc;
}

int secret_store(const char *state_dir, const struct secret *s)
{
    char path[PATH_MAX];
    if (s->len == 0 || s->len > SECRET_MAX_BYTES || secret_path(state_dir, path, sizeof(path)) != 0)
        return -1;
    if (make_dirs(state_dir) != 0) {
        log_error("server secret: cannot create %s: %s", state_dir, strerror(errno));
        return -1;
    }
    if (fs_check_dir("state directory", state_dir) != 0)
        return -1;
    return secret_write(state_dir, path, s->bytes, s->len);
}

void secret_fingerprint(const struct secret *s, char out[SECRET_FINGERPRINT_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(s->bytes, s->len, md);
    for (size_t i = 0; i < SECRET_FINGERPRINT_LEN / 2; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[SECRET_FINGERPRINT_LEN] = '\0';
}
