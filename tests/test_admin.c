/* SPDX-License-Identifier: MIT */
/*
 * test_admin.c - administration against the real peerdistd: who is an admin (root, group
 * peerdist as primary or supplementary group) and the refusal of everyone else, admin flushes
 * (the whole cache, a uid, a uid's tag) with their exact figures, the server key (show, set,
 * export; publications after a set use the new secret), unimplemented modes refused, and the
 * modes of the cache's files whatever the umask.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "contentinfo.h"
#include "harness.h"
#include "wire_util.h"

#define NOBODY 65534
/* Content sizes: 5 blocks, 4 blocks (the last 3392 bytes), 2 blocks. */
#define X_LEN (300 * 1024 + 17)
#define Y_LEN 200000
#define Z_LEN 70000

static struct test_daemon td;
static uint8_t *x, *y, *z;
static uint8_t *x_ci, *y_ci, *z_ci;
static size_t x_cilen, y_cilen, z_cilen;
static const uint8_t tag_a[16] = {0xa1}, tag_b[16] = {0xb2}, tag_c[16] = {0xc3}, tag_d[16] = {0xd4};

/* V1 content information of data, under the secret pass. */
static uint8_t *make_ci(const uint8_t *data, size_t len, const char *pass, size_t *cilen)
{
    struct ci_secret ks;
    ck_assert_int_eq(ci_secret_from_passphrase(CI_HASH_SHA256, pass, strlen(pass), &ks), 0);
    struct ci_gen *g = ci_gen_new(CI_VERSION_1, &ks);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(ci_gen_feed(g, data, len), 0);
    struct ci_info *ci;
    ck_assert_int_eq(ci_gen_finish(g, &ci), 0);
    ci_gen_free(g);
    uint8_t *out;
    ck_assert_int_eq(ci_serialize(ci, &out, cilen), 0);
    ci_info_free(ci);
    return out;
}

static void setup(void)
{
    td_init(&td, "local");
    td_start(&td);
    x = api_make_content(X_LEN, 1);
    y = api_make_content(Y_LEN, 2);
    z = api_make_content(Z_LEN, 3);
    x_ci = make_ci(x, X_LEN, "test-passphrase", &x_cilen);
    y_ci = make_ci(y, Y_LEN, "test-passphrase", &y_cilen);
    z_ci = make_ci(z, Z_LEN, "test-passphrase", &z_cilen);
}

static void teardown(void)
{
    /* A clean stop (under the sanitizers: nothing leaked, nothing wrong). */
    int status = td_stop(&td);
    bool clean = status == -1 || (WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!clean)
        fprintf(stderr, "peerdistd did not stop cleanly (status %d); its log: %s\n", status,
            td.log);
    if (clean)
        td_cleanup(&td);
    ck_assert_msg(clean, "peerdistd did not stop cleanly (status %d)", status);
    free(x);
    free(y);
    free(z);
    free(x_ci);
    free(y_ci);
    free(z_ci);
}

/*
 * Runs fn(arg) in a child as uid NOBODY with primary group gid and the given supplementary
 * groups (none: ngroups 0): its exit status (0 when fn returned 0).
 */
static int as_user(gid_t gid, const gid_t *groups, size_t ngroups, int (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgroups(ngroups, groups) != 0 || setgid(gid) != 0 || setuid(NOBODY) != 0)
            _exit(100);
        _exit(fn(arg));
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static long long sql(const char *q)
{
    return td_sql(&td, q);
}

/* ---- who is an admin ---- */

/* Every admin request answered ERROR_ACCESS_DENIED; the exit status says which was not. */
static int try_admin_refused(void *arg)
{
    int fd = wu_open(td.sock);
    if (fd < 0)
        return 1;
    uint64_t l, b;
    if (wu_admin_flush(fd, 1, 0, NULL, 0, &l, &b) != ERROR_ACCESS_DENIED)
        return 2;
    if (wu_admin_flush(fd, 0, 0, tag_a, 16, &l, &b) != ERROR_ACCESS_DENIED)
        return 3;
    static const uint8_t s[] = "mine";
    Peerdist__KeyOp ops[] = {PEERDIST__KEY_OP__KEY_OP_SHOW, PEERDIST__KEY_OP__KEY_OP_SET,
        PEERDIST__KEY_OP__KEY_OP_EXPORT};
    for (int i = 0; i < 3; i++) {
        Peerdist__Reply *r = wu_key(fd, ops[i], ops[i] == PEERDIST__KEY_OP__KEY_OP_SET ? s : NULL,
            ops[i] == PEERDIST__KEY_OP__KEY_OP_SET ? 4 : 0);
        if (!r || r->status != ERROR_ACCESS_DENIED ||
            r->body_case != PEERDIST__REPLY__BODY__NOT_SET)
            return 4 + i;
        peerdist__reply__free_unpacked(r, NULL);
    }
    /* The connection stays up: an ordinary request still works. */
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
    Peerdist__GetStatusRequest gs = PEERDIST__GET_STATUS_REQUEST__INIT;
    req.get_status = &gs;
    if (wu_status(fd, &req) != ERROR_SUCCESS)
        return 8;
    close(fd);
    return 0;
}

/* Key show and an admin flush of an unknown uid both succeed. */
static int try_admin_allowed(void *arg)
{
    int fd = wu_open(td.sock);
    if (fd < 0)
        return 1;
    Peerdist__Reply *r = wu_key(fd, PEERDIST__KEY_OP__KEY_OP_SHOW, NULL, 0);
    if (!r || r->status != ERROR_SUCCESS || r->body_case != PEERDIST__REPLY__BODY_KEY ||
        strlen(r->key->fingerprint) != 32)
        return 2;
    peerdist__reply__free_unpacked(r, NULL);
    uint64_t l, b;
    if (wu_admin_flush(fd, 0, 4242, NULL, 0, &l, &b) != ERROR_SUCCESS || l != 0 || b != 0)
        return 3;
    close(fd);
    return 0;
}

START_TEST(admin_requests_refused_for_other_users)
{
    int fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(wu_add_content(fd, tag_a, x_ci, x_cilen, x, X_LEN), ERROR_SUCCESS);
    ck_assert_int_eq(as_user(NOBODY, NULL, 0, try_admin_refused, NULL), 0);
    /* Nothing was flushed; each refusal is a log line naming uid, pid and what was asked. */
    ck_assert_int_eq(sql("SELECT count(*) FROM labels"), 5);
    ck_assert_int_eq(sql("SELECT count(*) FROM blocks"), 5);
    ck_assert(td_log_contains(&td, "(uid 65534 pid "));
    ck_assert_int_ge(td_log_count(&td, "admin flush refused: only root and group peerdist"), 1);
    ck_assert(td_log_contains(&td, "key export refused"));
    close(fd);
}
END_TEST

START_TEST(group_peerdist_members_are_admins)
{
    /* The daemon learns the group's id at start: make the group first, if need be. */
    bool made = false;
    if (!getgrnam("peerdist")) {
        if (system("groupadd peerdist 2>/dev/null") != 0) {
            fprintf(stderr, "test_admin: group peerdist missing and groupadd failed; skipped\n");
            return;
        }
        made = true;
    }
    struct group *gr = getgrnam("peerdist");
    ck_assert_ptr_nonnull(gr);
    gid_t gid = gr->gr_gid;
    td_stop(&td);
    td_start(&td);
    int supplementary = as_user(NOBODY, &gid, 1, try_admin_allowed, NULL);
    int primary = as_user(gid, NULL, 0, try_admin_allowed, NULL);
    int outsider = as_user(NOBODY, NULL, 0, try_admin_refused, NULL);
    if (made && system("groupdel peerdist") != 0)
        fprintf(stderr, "test_admin: cannot remove group peerdist\n");
    ck_assert_int_eq(supplementary, 0);
    ck_assert_int_eq(primary, 0);
    ck_assert_int_eq(outsider, 0);
}
END_TEST

/* ---- admin flushes ---- */

/* As NOBODY: y under tag c, z under tag d. */
static int add_as_nobody(void *arg)
{
    int fd = wu_open(td.sock);
    if (fd < 0)
        return 1;
    if (wu_add_content(fd, tag_c, y_ci, y_cilen, y, Y_LEN) != ERROR_SUCCESS)
        return 2;
    if (wu_add_content(fd, tag_d, z_ci, z_cilen, z, Z_LEN) != ERROR_SUCCESS)
        return 3;
    close(fd);
    return 0;
}

static void flush_expect(int fd, int all, uint32_t uid, const uint8_t *tag, uint64_t labels,
    uint64_t bytes)
{
    uint64_t l, b;
    ck_assert_uint_eq(wu_admin_flush(fd, all, uid, tag, tag ? 16 : 0, &l, &b), ERROR_SUCCESS);
    ck_assert_uint_eq(l, labels);
    ck_assert_uint_eq(b, bytes);
}

static uint32_t read_status(int fd, const uint8_t *tag, const uint8_t *ci, size_t cilen,
    uint64_t *len)
{
    return wu_read(fd, tag, ci, cilen, 0, 1 << 20, len);
}

START_TEST(admin_flush_of_a_uid_and_of_one_tag)
{
    int fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(wu_add_content(fd, tag_a, x_ci, x_cilen, x, X_LEN), ERROR_SUCCESS);
    ck_assert_uint_eq(wu_add_content(fd, tag_a, y_ci, y_cilen, y, Y_LEN), ERROR_SUCCESS);
    ck_assert_int_eq(as_user(NOBODY, NULL, 0, add_as_nobody, NULL), 0);
    ck_assert_int_eq(sql("SELECT count(*) FROM labels WHERE uid = 65534"), 4 + 2);
    /* Tag c of uid 65534: its 4 labels go; root's tag a still keeps y's blocks. */
    flush_expect(fd, 0, NOBODY, tag_c, 4, 0);
    ck_assert_int_eq(sql("SELECT count(*) FROM labels WHERE uid = 65534"), 2);
    ck_assert_int_eq(sql("SELECT count(*) FROM blocks"), 5 + 4 + 2);
    /* Every tag of uid 65534: tag d's 2 labels, and z's blocks that only they kept. */
    flush_expect(fd, 0, NOBODY, NULL, 2, Z_LEN);
    ck_assert_int_eq(sql("SELECT count(*) FROM labels WHERE uid = 65534"), 0);
    ck_assert_int_eq(sql("SELECT count(*) FROM blocks"), 5 + 4);
    uint64_t len;
    ck_assert_uint_eq(read_status(fd, tag_b, z_ci, z_cilen, &len), PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(len, Z_LEN);
    ck_assert_uint_eq(read_status(fd, tag_b, y_ci, y_cilen, &len), ERROR_SUCCESS);
    ck_assert_uint_eq(len, Y_LEN);
    /* Nothing left to flush, an unknown tag: zeros, not errors. */
    flush_expect(fd, 0, NOBODY, NULL, 0, 0);
    flush_expect(fd, 0, 0, tag_b, 0, 0);
    /* Root's own tag through the admin verb: as PeerDistClientFlushContent would. */
    flush_expect(fd, 0, 0, tag_a, 9, X_LEN + Y_LEN);
    ck_assert_int_eq(sql("SELECT count(*) FROM blocks"), 0);
    /* Bad requests: a tag that is not 16 bytes; everything plus a uid. */
    uint64_t l, b;
    ck_assert_uint_eq(wu_admin_flush(fd, 0, 0, tag_a, 5, &l, &b), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(wu_admin_flush(fd, 1, 7, NULL, 0, &l, &b), ERROR_INVALID_PARAMETER);
    ck_assert(td_log_contains(&td, "admin flush of uid 65534's labels (one tag)"));
    close(fd);
}
END_TEST

static bool data_files_gone(void *arg)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "test -z \"$(find '%s/data' -type f)\"", td.dir);
    return system(cmd) == 0;
}

/* More rows than one slice holds (STORE_ADMIN_SLICE_ROWS, 1024): block rows with a label
 * each, and labels whose row is gone, straight into the database. */
#define FAKE_BLOCKS 5000
#define FAKE_ORPHANS 3000

START_TEST(admin_flush_of_the_whole_cache)
{
    int fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(wu_add_content(fd, tag_a, x_ci, x_cilen, x, X_LEN), ERROR_SUCCESS);
    ck_assert_uint_eq(wu_add_content(fd, tag_b, y_ci, y_cilen, y, Y_LEN), ERROR_SUCCESS);
    ck_assert_int_eq(as_user(NOBODY, NULL, 0, add_as_nobody, NULL), 0); /* y again, and z */
    sql("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4999) "
        "INSERT INTO blocks (segment_id, block, owner, hash, length, file_owner) "
        "SELECT x'ee01', i, -1, zeroblob(32), 100, -1 FROM n");
    sql("INSERT INTO labels (uid, tag, segment_id, block, bytes, row_owner) "
        "SELECT 4242, zeroblob(16), segment_id, block, 100, -1 FROM blocks "
        "WHERE segment_id = x'ee01'");
    sql("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2999) "
        "INSERT INTO labels (uid, tag, segment_id, block, bytes, row_owner) "
        "SELECT 4343, zeroblob(16), x'ee02', i, 0, -1 FROM n");
    long long labels = 5 + 4 + 4 + 2 + FAKE_BLOCKS + FAKE_ORPHANS;
    ck_assert_int_eq(sql("SELECT count(*) FROM labels"), labels);
    ck_assert_int_eq(sql("SELECT count(*) FROM blocks"), 5 + 4 + 2 + FAKE_BLOCKS);
    flush_expect(fd, 1, 0, NULL, (uint64_t)labels, X_LEN + Y_LEN + Z_LEN + 100 * FAKE_BLOCKS);
    ck_assert_int_eq(sql("SELECT count(*) FROM labels"), 0);
    ck_assert_int_eq(sql("SELECT count(*) FROM blocks"), 0);
    uint64_t len;
    ck_assert_uint_eq(read_status(fd, tag_a, x_ci, x_cilen, &len), PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(len, X_LEN);
    ck_assert_msg(td_wait_until(data_files_gone, NULL), "data files left after flush --all");
    /* An empty cache: zeros. The cache works on: add and read again. */
    flush_expect(fd, 1, 0, NULL, 0, 0);
    ck_assert_uint_eq(wu_add_content(fd, tag_a, x_ci, x_cilen, x, X_LEN), ERROR_SUCCESS);
    ck_assert_uint_eq(read_status(fd, tag_b, x_ci, x_cilen, &len), ERROR_SUCCESS);
    ck_assert_uint_eq(len, X_LEN);
    ck_assert(td_log_contains(&td, "admin flush of the whole cache ended with Win32 status 0"));
    close(fd);
}
END_TEST

/*
 * Reads in flight while the whole cache is flushed: each is answered with the right bytes or
 * as missing, never with other bytes. After a restart every block's first read is checked on
 * a worker, so the reads wait there while the flush's slices commit.
 */
START_TEST(reads_in_flight_during_a_whole_cache_flush)
{
    int fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    for (int round = 0; round < 5; round++) {
        ck_assert_uint_eq(wu_add_content(fd, tag_a, x_ci, x_cilen, x, X_LEN), ERROR_SUCCESS);
        close(fd);
        td_stop(&td);
        td_start(&td);
        fd = wu_open(td.sock);
        int rd = wu_open(td.sock);
        ck_assert(fd >= 0 && rd >= 0);
        uint64_t h = wu_open_ci(rd, tag_b, x_ci, x_cilen);
        ck_assert_uint_ne(h, 0);
        uint64_t ids[8];
        for (int i = 0; i < 8; i++) {
            Peerdist__ReadRequest a = PEERDIST__READ_REQUEST__INIT;
            a.handle = h;
            a.offset = (uint64_t)i * 37000;
            a.max_bytes = 1 << 20;
            Peerdist__Request req = PEERDIST__REQUEST__INIT;
            req.body_case = PEERDIST__REQUEST__BODY_READ;
            req.read = &a;
            ids[i] = wu_send(rd, &req);
            ck_assert_uint_ne(ids[i], 0);
        }
        uint64_t l, b;
        ck_assert_uint_eq(wu_admin_flush(fd, 1, 0, NULL, 0, &l, &b), ERROR_SUCCESS);
        ck_assert_uint_eq(l, 5);
        for (int i = 0; i < 8; i++) {
            Peerdist__Reply *r = wu_recv(rd);
            ck_assert_ptr_nonnull(r);
            ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_READ);
            uint64_t off = r->read->offset;
            if (r->status == ERROR_SUCCESS) {
                ck_assert_uint_le(off + r->read->data.len, X_LEN);
                ck_assert_msg(memcmp(r->read->data.data, x + off, r->read->data.len) == 0,
                    "a read served other bytes at %llu", (unsigned long long)off);
            } else {
                ck_assert_uint_eq(r->status, PEERDIST_ERROR_MISSING_DATA);
            }
            peerdist__reply__free_unpacked(r, NULL);
        }
        close(rd);
    }
    close(fd);
}
END_TEST

/* ---- the server key ---- */

static void fingerprint(const void *s, size_t n, char out[33])
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(s, n, md);
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static size_t read_secret_file(uint8_t *buf, size_t cap, mode_t *mode)
{
    char path[200];
    snprintf(path, sizeof(path), "%s/state/secret", td.dir);
    int f = open(path, O_RDONLY);
    ck_assert_int_ge(f, 0);
    struct stat st;
    ck_assert_int_eq(fstat(f, &st), 0);
    *mode = st.st_mode & 07777;
    ssize_t n = read(f, buf, cap);
    close(f);
    ck_assert_int_gt(n, 0);
    return (size_t)n;
}

static void expect_key(int fd, Peerdist__KeyOp op, const uint8_t *secret, size_t len)
{
    char fp[33];
    fingerprint(secret, len, fp);
    Peerdist__Reply *r = wu_key(fd, op, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->status, ERROR_SUCCESS);
    ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_KEY);
    ck_assert_str_eq(r->key->fingerprint, fp);
    ck_assert_uint_eq(r->key->secret_bytes, len);
    if (op == PEERDIST__KEY_OP__KEY_OP_EXPORT) {
        ck_assert_uint_eq(r->key->secret.len, len);
        ck_assert(memcmp(r->key->secret.data, secret, len) == 0);
    } else {
        ck_assert_uint_eq(r->key->secret.len, 0); /* never the secret itself */
    }
    peerdist__reply__free_unpacked(r, NULL);
}

/* The first segment's ID (HoHoDk) of a publication's V1 content information. */
static void published_segment_id(PEERDIST_INSTANCE_HANDLE h, const char *id, uint8_t out[32])
{
    size_t n;
    uint8_t *wire = api_get_ci(h, id, 0, 0, NULL, &n);
    struct ci_info *ci;
    struct ci_error e;
    ck_assert_uint_eq(ci_parse(wire, n, &ci, &e), ERROR_SUCCESS);
    memcpy(out, ci->segments[0].id, 32);
    ci_info_free(ci);
    free(wire);
}

static void expected_segment_id(const char *pass, const uint8_t *data, size_t len, uint8_t out[32])
{
    size_t n;
    uint8_t *wire = make_ci(data, len, pass, &n);
    struct ci_info *ci;
    struct ci_error e;
    ck_assert_uint_eq(ci_parse(wire, n, &ci, &e), ERROR_SUCCESS);
    memcpy(out, ci->segments[0].id, 32);
    ci_info_free(ci);
    free(wire);
}

START_TEST(key_show_set_export)
{
    int fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    uint8_t old[4096], now[4096];
    mode_t mode;
    size_t old_len = read_secret_file(old, sizeof(old), &mode);
    ck_assert_uint_eq(old_len, 32); /* generated at first start */
    expect_key(fd, PEERDIST__KEY_OP__KEY_OP_SHOW, old, old_len);
    expect_key(fd, PEERDIST__KEY_OP__KEY_OP_EXPORT, old, old_len);

    /* A publication before the change: made with the old secret, and it keeps it. */
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    api_publish(h, "before", x, X_LEN, 1, NULL, 0);
    uint8_t before[32], seg[32], want[32];
    published_segment_id(h, "before", before);
    expected_segment_id("new-passphrase", x, X_LEN, want);
    ck_assert(memcmp(before, want, 32) != 0);

    static const char pass[] = "new-passphrase";
    char fp[33];
    fingerprint(pass, strlen(pass), fp);
    Peerdist__Reply *r = wu_key(fd, PEERDIST__KEY_OP__KEY_OP_SET, (const uint8_t *)pass,
        strlen(pass));
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->status, ERROR_SUCCESS);
    ck_assert_str_eq(r->key->fingerprint, fp);
    ck_assert_uint_eq(r->key->secret.len, 0);
    peerdist__reply__free_unpacked(r, NULL);
    /* The file holds the raw bytes, mode 0600, as a generated one. */
    size_t now_len = read_secret_file(now, sizeof(now), &mode);
    ck_assert_uint_eq(now_len, strlen(pass));
    ck_assert(memcmp(now, pass, now_len) == 0);
    ck_assert_uint_eq(mode, 0600);
    expect_key(fd, PEERDIST__KEY_OP__KEY_OP_SHOW, (const uint8_t *)pass, strlen(pass));
    expect_key(fd, PEERDIST__KEY_OP__KEY_OP_EXPORT, (const uint8_t *)pass, strlen(pass));

    /* A publication after it: HoHoDk from the new secret. The old one is unchanged. */
    api_publish(h, "after", x, X_LEN, 1, NULL, 0);
    published_segment_id(h, "after", seg);
    ck_assert(memcmp(seg, want, 32) == 0);
    published_segment_id(h, "before", seg);
    ck_assert(memcmp(seg, before, 32) == 0);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);

    /* Out of bounds: nothing changes. */
    uint8_t big[1025];
    memset(big, 7, sizeof(big));
    r = wu_key(fd, PEERDIST__KEY_OP__KEY_OP_SET, NULL, 0);
    ck_assert_uint_eq(r->status, ERROR_INVALID_PARAMETER);
    peerdist__reply__free_unpacked(r, NULL);
    r = wu_key(fd, PEERDIST__KEY_OP__KEY_OP_SET, big, sizeof(big));
    ck_assert_uint_eq(r->status, ERROR_INVALID_PARAMETER);
    peerdist__reply__free_unpacked(r, NULL);
    r = wu_key(fd, PEERDIST__KEY_OP__KEY_OP_SET, big, 1024); /* the largest allowed */
    ck_assert_uint_eq(r->status, ERROR_SUCCESS);
    peerdist__reply__free_unpacked(r, NULL);
    r = wu_key(fd, PEERDIST__KEY_OP__KEY_OP_SET, (const uint8_t *)pass, strlen(pass));
    ck_assert_uint_eq(r->status, ERROR_SUCCESS);
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);

    /* Logged with who did it, never with the secret. */
    ck_assert_int_eq(td_log_count(&td, "server secret set ("), 3);
    ck_assert_int_ge(td_log_count(&td, "server secret exported"), 2);
    ck_assert(!td_log_contains(&td, pass));

    /* Kept across a restart. */
    td_stop(&td);
    td_start(&td);
    fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    expect_key(fd, PEERDIST__KEY_OP__KEY_OP_SHOW, (const uint8_t *)pass, strlen(pass));
    close(fd);
}
END_TEST

/* ---- modes not implemented ---- */

/* Runs peerdistd with the test's configuration and extra flags; its exit status. */
static int run_daemon(const char *flag, const char *value)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int f = open(td.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(f, 2);
        dup2(f, 1);
        execl(PEERDISTD_PATH, "peerdistd", "--socket", td.sock, "--db", td.db, "--config", td.conf,
            flag, value, (char *)NULL);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static bool reload_refused(void *arg)
{
    return td_log_contains(&td, "reload: mode hosted-client is not implemented");
}

static bool reload_needs_restart(void *arg)
{
    return td_log_contains(&td, "reload: mode local -> distributed needs a restart");
}

START_TEST(unimplemented_modes_are_refused)
{
    td_stop(&td);
    td_set_mode(&td, "hosted-client");
    ck_assert_int_eq(run_daemon("--log-level", "info"), 1);
    ck_assert(td_log_contains(&td, "mode hosted-client is not implemented"));
    td_set_mode(&td, "local");
    ck_assert_int_eq(run_daemon("--mode", "hosted-server"), 1);
    ck_assert(td_log_contains(&td, "mode hosted-server is not implemented"));
    /* A reload to such a mode keeps the running one; so does one to distributed, whose
     * sockets are set up at start only. */
    td_start(&td);
    td_set_mode(&td, "hosted-client");
    td_signal(&td, SIGHUP);
    ck_assert(td_wait_until(reload_refused, NULL));
    ck_assert(td_log_contains(&td, "keeping mode local"));
    td_set_mode(&td, "distributed");
    td_signal(&td, SIGHUP);
    ck_assert(td_wait_until(reload_needs_restart, NULL));
    int fd = wu_connect(td.sock);
    ck_assert_int_ge(fd, 0);
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.min_version = h.max_version = 1;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    Peerdist__Reply *r = wu_call(fd, &req);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->hello->mode, "local");
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);
}
END_TEST

/* ---- files and permissions ---- */

static void expect_mode(const char *path, mode_t want)
{
    struct stat st;
    ck_assert_msg(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
    ck_assert_msg((st.st_mode & 07777) == want, "%s: mode %04o, want %04o", path,
        (unsigned)(st.st_mode & 07777), (unsigned)want);
    struct group *gr = geteuid() == 0 ? getgrnam("peerdist") : NULL;
    gid_t gid = gr ? gr->gr_gid : getegid();
    ck_assert_msg(st.st_gid == gid, "%s: group %u, want %u", path, (unsigned)st.st_gid,
        (unsigned)gid);
}

/* Every file and directory under data/: files 0640, directories 0750. */
static void expect_data_modes(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/data", td.dir);
    expect_mode(path, 0750);
    DIR *top = opendir(path);
    ck_assert_ptr_nonnull(top);
    int files = 0;
    for (struct dirent *e; (e = readdir(top));) {
        if (e->d_name[0] == '.')
            continue;
        char sub[600];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        expect_mode(sub, 0750);
        DIR *d = opendir(sub);
        ck_assert_ptr_nonnull(d);
        for (struct dirent *f; (f = readdir(d));) {
            if (f->d_name[0] == '.')
                continue;
            char file[900];
            snprintf(file, sizeof(file), "%s/%s", sub, f->d_name);
            expect_mode(file, 0640);
            files++;
        }
        closedir(d);
    }
    closedir(top);
    ck_assert_int_gt(files, 0);
}

static void expect_cache_modes(void)
{
    char path[200];
    expect_mode(td.db, 0640);
    snprintf(path, sizeof(path), "%s-wal", td.db);
    expect_mode(path, 0640);
    snprintf(path, sizeof(path), "%s-shm", td.db);
    expect_mode(path, 0640);
    expect_data_modes();
}

START_TEST(cache_files_are_0640_whatever_the_umask)
{
    static const mode_t masks[] = {0, 022};
    for (size_t i = 0; i < 2; i++) {
        td_stop(&td);
        td_cleanup(&td);
        td_init(&td, "local");
        mode_t was = umask(masks[i]);
        td_start(&td);
        umask(was);
        int fd = wu_open(td.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_uint_eq(wu_add_content(fd, tag_a, x_ci, x_cilen, x, X_LEN), ERROR_SUCCESS);
        close(fd);
        expect_cache_modes();
    }
    /* Files an older start left open to others are closed to them at the next start. */
    td_stop(&td);
    char path[200];
    ck_assert_int_eq(chmod(td.db, 0644), 0);
    snprintf(path, sizeof(path), "%s/data", td.dir);
    ck_assert_int_eq(chmod(path, 0755), 0);
    mode_t was = umask(0);
    td_start(&td);
    umask(was);
    expect_mode(td.db, 0640);
    expect_mode(path, 0750);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("admin");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    /* Root is the admin these run as, and the one who may become another uid. */
    if (geteuid() == 0) {
        tcase_add_test(tc, admin_requests_refused_for_other_users);
        tcase_add_test(tc, group_peerdist_members_are_admins);
        tcase_add_test(tc, admin_flush_of_a_uid_and_of_one_tag);
        tcase_add_test(tc, admin_flush_of_the_whole_cache);
        tcase_add_test(tc, reads_in_flight_during_a_whole_cache_flush);
        tcase_add_test(tc, key_show_set_export);
    } else {
        fprintf(stderr, "test_admin: not root: the admin, flush and key tests are skipped\n");
    }
    tcase_add_test(tc, unimplemented_modes_are_refused);
    tcase_add_test(tc, cache_files_are_0640_whatever_the_umask);
    suite_add_tcase(s, tc);
    return check_run(s);
}
