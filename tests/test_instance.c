/* SPDX-License-Identifier: MIT */
/*
 * test_instance.c - what a start of peerdistd may and may not do to the files it finds, against
 * the real daemon: one daemon per database directory (a second one, started while the first
 * is under AddData load, exits 1 naming the first and damages nothing), and nothing it creates
 * is for other users, whatever the umask (docs/peerdistd.8.md, Files and permissions).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "contentinfo.h"
#include "harness.h"

static struct test_daemon td;

static void setup(void)
{
    td_init(&td, "local");
    td_start(&td);
}

static void setup_unstarted(void)
{
    td_init(&td, "local");
}

static void teardown(void)
{
    td_cleanup(&td);
}

/* ---- a second daemon: how its start ended ---- */

static bool socket_answers(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    return ok;
}

struct start {
    pid_t pid;
    const char *sock; /* NULL: the socket is the first daemon's, so it answers anyway */
    bool exited, listening;
    int status;
};

static bool exited_or_listening(void *arg)
{
    struct start *s = arg;
    if (waitpid(s->pid, &s->status, WNOHANG) == s->pid)
        return s->exited = true;
    return s->listening = s->sock && socket_answers(s->sock);
}

/*
 * Starts peerdistd with these paths (the configuration is td's; the state directory td's
 * unless state_dir), as user as unless that is (uid_t)-1, and waits until it exits or
 * listens; one that listens is stopped. The exit status, or -1 for one that started.
 */
static int start_daemon_as(const char *sock, const char *db, const char *log, bool own_socket,
    uid_t as, const char *state_dir)
{
    struct start s = {.sock = own_socket ? sock : NULL};
    s.pid = fork();
    if (s.pid == 0) { /* only what is safe after a fork of a threaded process: no Check */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        if (as != (uid_t)-1 && (setgroups(0, NULL) != 0 || setgid(as) != 0 || setuid(as) != 0))
            _exit(126);
        if (state_dir)
            execl(PEERDISTD_PATH, "peerdistd", "--socket", sock, "--db", db, "--config", td.conf,
                "--state-dir", state_dir, (char *)NULL);
        else
            execl(PEERDISTD_PATH, "peerdistd", "--socket", sock, "--db", db, "--config", td.conf,
                (char *)NULL);
        _exit(127);
    }
    ck_assert_int_gt(s.pid, 0);
    ck_assert_msg(td_wait_until(exited_or_listening, &s), "peerdistd neither exited nor listened");
    if (s.listening) {
        kill(s.pid, SIGTERM);
        waitpid(s.pid, NULL, 0);
        return -1;
    }
    return WIFEXITED(s.status) ? WEXITSTATUS(s.status) : 128 + WTERMSIG(s.status);
}

static int start_daemon(const char *sock, const char *db, const char *log, bool own_socket)
{
    return start_daemon_as(sock, db, log, own_socket, (uid_t)-1, NULL);
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* ---- content the tests add: published once, read back through the API ---- */

#define NCONTENT 48
#define CONTENT_LEN (5 * 65536 + 333) /* one segment, one data file, six blocks */

struct corpus {
    uint8_t *data[NCONTENT];
    struct api_ci ci[NCONTENT];
    atomic_bool acked[NCONTENT];
    atomic_bool stop;
};

static void corpus_publish(struct corpus *cp, int n)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "instance-%d", i);
        cp->data[i] = api_make_content(CONTENT_LEN, 1000 + (unsigned)i);
        api_publish(h, id, cp->data[i], CONTENT_LEN, 1, NULL, 0);
        PEERDIST_CONTENTINFO_HANDLE hci;
        ck_assert_uint_eq(api_open_ci(h, id, 0, 0, NULL, &hci), ERROR_SUCCESS);
        cp->ci[i].bytes = api_retrieve_ci(h, hci, 4096, &cp->ci[i].len);
        cp->ci[i].info = NULL;
        ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, hci), ERROR_SUCCESS);
    }
    PeerDistShutdown(h);
}

static void corpus_free(struct corpus *cp, int n)
{
    for (int i = 0; i < n; i++) {
        free(cp->data[i]);
        free(cp->ci[i].bytes);
    }
}

/* Adds content i whole under its own tag: acknowledged, or the test fails. */
static void add_content(PEERDIST_INSTANCE_HANDLE h, struct corpus *cp, int i)
{
    PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)i);
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &cp->ci[i]);
    DWORD got = 0;
    ck_assert_uint_eq(api_add_data(h, c, 0, cp->data[i], CONTENT_LEN, &got), ERROR_SUCCESS);
    ck_assert_uint_eq(got, CONTENT_LEN);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    cp->acked[i] = true;
}

/* The AddData load: every content once, one after another, until all are added. */
static void *adder(void *arg)
{
    struct corpus *cp = arg;
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    for (int i = 0; i < NCONTENT; i++)
        add_content(h, cp, i);
    PeerDistShutdown(h);
    cp->stop = true;
    return NULL;
}

/* How many acknowledged contents do not read back whole and right. */
static int count_damaged(struct corpus *cp, int n)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = api_make_tag(200);
    uint8_t *buf = malloc(CONTENT_LEN);
    int damaged = 0;
    for (int i = 0; i < n; i++) {
        if (!cp->acked[i])
            continue;
        PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &cp->ci[i]);
        bool ok = true;
        for (uint64_t off = 0; ok && off < CONTENT_LEN;) {
            struct api_read r = api_block_read(h, c, off, CONTENT_LEN, buf);
            ok = r.status == ERROR_SUCCESS && r.offset == off && r.bytes > 0 &&
                memcmp(buf, cp->data[i] + off, r.bytes) == 0;
            off += r.bytes;
        }
        damaged += !ok;
        ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    }
    free(buf);
    PeerDistShutdown(h);
    return damaged;
}

/* ---- one daemon per database directory ---- */

/*
 * While the first daemon takes an AddData load, a second one is started on the same database
 * again and again, half the time on the same socket, half on another: each exits 1 and names
 * the first daemon's pid, none runs beside it, and every acknowledged content still reads back
 * whole and right, from the running daemon and after its restart. (Before the lock, each start
 * ran the start-up reconciliation first, deleting data files still being written; on another
 * socket it ran beside the first.)
 */
START_TEST(second_daemon_on_the_same_database_is_refused_under_load)
{
    static struct corpus cp;
    corpus_publish(&cp, NCONTENT);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, adder, &cp), 0);
    char holder[64], other_sock[128], log[128];
    snprintf(holder, sizeof(holder), "in use by another peerdistd (pid %d", (int)td.pid);
    snprintf(other_sock, sizeof(other_sock), "%s/second.sock", td.dir);
    snprintf(log, sizeof(log), "%s/second.log", td.dir);
    int starts = 0, refused = 0, named = 0, beside = 0;
    while ((!cp.stop || starts < 8) && starts < 400) {
        bool same_socket = starts % 2 == 0;
        int rc = start_daemon(same_socket ? td.sock : other_sock, td.db, log, !same_socket);
        starts++;
        refused += rc == 1;
        beside += rc == -1;
        named += file_contains(log, holder);
    }
    pthread_join(t, NULL);
    int damaged = count_damaged(&cp, NCONTENT);
    ck_assert_int_eq(td_stop(&td), 0);
    td_start(&td); /* the first daemon's own reconciliation finds everything in place */
    int damaged_after_restart = count_damaged(&cp, NCONTENT);
    fprintf(stderr,
        "second daemon started %d times under load: %d exited 1, %d named the holder, %d ran "
        "beside the first; acknowledged contents damaged: %d, after a restart %d (of %d)\n",
        starts, refused, named, beside, damaged, damaged_after_restart, NCONTENT);
    ck_assert_int_eq(damaged, 0);
    ck_assert_int_eq(damaged_after_restart, 0);
    ck_assert_int_eq(beside, 0);
    ck_assert_int_eq(refused, starts);
    ck_assert_int_eq(named, starts);
    corpus_free(&cp, NCONTENT);
}
END_TEST

/*
 * Two databases in one directory would share one data/, and each daemon's reconciliation
 * deletes the files the other's rows name: the lock is per directory, so the second daemon
 * is refused and the first's data stays readable.
 */
START_TEST(two_databases_in_one_directory_are_refused)
{
    static struct corpus cp;
    corpus_publish(&cp, 4);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    for (int i = 0; i < 4; i++)
        add_content(h, &cp, i);
    PeerDistShutdown(h);
    char db[128], sock[128], log[128], holder[64];
    snprintf(db, sizeof(db), "%s/other.db", td.dir);
    snprintf(sock, sizeof(sock), "%s/other.sock", td.dir);
    snprintf(log, sizeof(log), "%s/other.log", td.dir);
    snprintf(holder, sizeof(holder), "in use by another peerdistd (pid %d", (int)td.pid);
    int rc = start_daemon(sock, db, log, true);
    int damaged = count_damaged(&cp, 4);
    fprintf(stderr, "a second database in the directory: exit %d; contents damaged %d of 4\n", rc,
        damaged);
    ck_assert_int_eq(damaged, 0);
    ck_assert_int_eq(rc, 1);
    ck_assert(file_contains(log, holder));
    corpus_free(&cp, 4);
}
END_TEST

/* The lock does not hide the socket check: a daemon with a database elsewhere that is given
 * the first one's socket still exits 1 ("already listening"), and the first keeps serving. */
START_TEST(another_directory_on_the_same_socket_is_refused)
{
    static struct corpus cp;
    corpus_publish(&cp, 1);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    add_content(h, &cp, 0);
    PeerDistShutdown(h);
    char dir[128], db[160], log[128];
    snprintf(dir, sizeof(dir), "%s/elsewhere", td.dir);
    snprintf(db, sizeof(db), "%s/cache.db", dir);
    snprintf(log, sizeof(log), "%s/elsewhere.log", td.dir);
    ck_assert_int_eq(start_daemon(td.sock, db, log, false), 1);
    ck_assert(file_contains(log, "another peerdistd is already listening"));
    ck_assert_int_eq(count_damaged(&cp, 1), 0);
    corpus_free(&cp, 1);
}
END_TEST

static bool lock_names_pid(void *arg)
{
    char path[160], want[32], got[32] = {0};
    snprintf(path, sizeof(path), "%s/peerdistd.lock", td.dir);
    snprintf(want, sizeof(want), "%d\n", *(int *)arg);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(got, sizeof(got), f) && strcmp(got, want) == 0;
    fclose(f);
    return ok;
}

/* The lock dies with its daemon, kill -9 included: the next start takes it (the stale file
 * and its old pid do not stand in the way), and the file names the new holder. */
START_TEST(lock_is_released_by_sigkill)
{
    int first = (int)td.pid;
    ck_assert(lock_names_pid(&first));
    td_kill(&td);
    td_start(&td);
    int second = (int)td.pid;
    ck_assert(lock_names_pid(&second));
}
END_TEST

/* ---- nothing the daemon creates is for other users ---- */

static gid_t expected_group(void)
{
    struct group *gr = geteuid() == 0 ? getgrnam("peerdist") : NULL;
    return gr ? gr->gr_gid : getegid();
}

static char walk_failures[4096];
static int walk_count;

static void walk_fail(const char *fmt, const char *path, unsigned a, unsigned b)
{
    size_t n = strlen(walk_failures);
    snprintf(walk_failures + n, sizeof(walk_failures) - n, fmt, path, a, b);
}

/*
 * Every entry under td.dir but the test's own (td.dir itself, the configuration, logs) and
 * the socket's: no bit for others; files 0640 (the secret 0600, the disk reserve anything
 * private), directories 0750 (the state directory 0700); the group, the service group's or
 * the daemon's own.
 */
static int check_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)type;
    const char *base = path + ftw->base;
    unsigned mode = st->st_mode & 07777;
    if (ftw->level == 0 || strcmp(base, "peerdistd.conf") == 0 || strstr(base, ".log"))
        return 0;
    walk_count++;
    if (S_ISSOCK(st->st_mode)) {
        if (mode != 0666)
            walk_fail("%s: socket mode %04o, want %04o\n", path, mode, 0666);
        return 0;
    }
    if (strcmp(base, "run") == 0 && S_ISDIR(st->st_mode)) { /* the socket's own directory */
        if (mode != 0755)
            walk_fail("%s: socket directory mode %04o, want %04o\n", path, mode, 0755);
        return 0;
    }
    unsigned want = S_ISDIR(st->st_mode) ? (strcmp(base, "state") == 0 ? 0700 : 0750)
                                         : (strcmp(base, "secret") == 0 ? 0600 : 0640);
    if (strstr(base, ".reserve")) /* the disk reserve: nobody reads it; private is enough */
        want = mode & 0770;
    if (mode != want)
        walk_fail("%s: mode %04o, want %04o\n", path, mode, want);
    if (st->st_gid != expected_group())
        walk_fail("%s: group %u, want %u\n", path, st->st_gid, expected_group());
    return 0;
}

static void assert_nothing_for_others(void)
{
    walk_failures[0] = '\0';
    walk_count = 0;
    ck_assert_int_eq(nftw(td.dir, check_entry, 16, FTW_PHYS), 0);
    ck_assert_msg(walk_failures[0] == '\0', "%s", walk_failures);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/*
 * Under umask u, with the database in a directory the daemon creates and the socket in
 * another (as packaging/ lays them out): after publishing, AddData and a flush, while the
 * daemon runs (so the -wal and -shm exist), and again after a kill -9 and a restart.
 */
static void run_under_umask(mode_t u)
{
    umask(u);
    snprintf(td.db, sizeof(td.db), "%s/cache/cache.db", td.dir);
    snprintf(td.sock, sizeof(td.sock), "%s/run/peerdistd.sock", td.dir);
    setenv("PEERDIST_SOCKET", td.sock, 1);
    td_start(&td);
    static struct corpus cp;
    corpus_publish(&cp, 2);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    add_content(h, &cp, 0);
    add_content(h, &cp, 1);
    PEERDIST_CONTENT_TAG tag = api_make_tag(1);
    ck_assert_uint_eq(api_flush(h, &tag), ERROR_SUCCESS);
    PeerDistShutdown(h);
    char wal[160], lock[160];
    snprintf(wal, sizeof(wal), "%s-wal", td.db);
    snprintf(lock, sizeof(lock), "%s/cache/peerdistd.lock", td.dir);
    ck_assert(exists(wal));
    assert_nothing_for_others();
    ck_assert(exists(lock));
    ck_assert_int_ge(walk_count, 10); /* cache/, db, -wal, -shm, lock, data/, xx/, file, ... */
    td_kill(&td);
    td_start(&td);
    assert_nothing_for_others();
    ck_assert_int_eq(count_damaged(&cp, 1), 0);
    corpus_free(&cp, 2);
}

START_TEST(nothing_is_for_others_under_umask_022)
{
    run_under_umask(022);
}
END_TEST

START_TEST(nothing_is_for_others_under_umask_000)
{
    run_under_umask(0);
}
END_TEST

/* A database, -wal and -shm left readable by others (an older daemon started by hand under
 * umask 022; a kill -9 leaves the -wal and -shm) lose that permission at the next start. */
START_TEST(existing_files_lose_what_others_had)
{
    umask(022);
    td_start(&td);
    static struct corpus cp;
    corpus_publish(&cp, 1);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    add_content(h, &cp, 0);
    PeerDistShutdown(h);
    td_kill(&td); /* the -wal and -shm stay */
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", td.db, sfx[i]);
        ck_assert_msg(chmod(p, 0644) == 0, "%s: %s", p, strerror(errno));
    }
    td_start(&td);
    for (int i = 0; i < 3; i++) {
        char p[160];
        struct stat st;
        snprintf(p, sizeof(p), "%s%s", td.db, sfx[i]);
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_msg((st.st_mode & 0777) == 0640, "%s: mode %04o", p, st.st_mode & 0777);
    }
    ck_assert_int_eq(count_damaged(&cp, 1), 0);
    corpus_free(&cp, 1);
}
END_TEST

/* Starts the daemon on db in dir (made with mode, owner and group): its exit status (-1: it
 * started), with the log line expected of a refusal. */
static int start_in_dir(const char *dir, mode_t mode, uid_t uid, gid_t gid, const char *needle)
{
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(chown(dir, uid, gid), 0);
    ck_assert_int_eq(chmod(dir, mode), 0);
    char db[160], sock[160], log[160];
    snprintf(db, sizeof(db), "%s/cache.db", dir);
    snprintf(sock, sizeof(sock), "%s/peerdistd.sock", td.dir);
    snprintf(log, sizeof(log), "%s/refused.log", td.dir);
    int rc = start_daemon(sock, db, log, true);
    if (needle)
        ck_assert_msg(file_contains(log, needle), "no '%s' in the log", needle);
    return rc;
}

/* A directory others can write (even sticky, like /tmp) is refused: any of them could put a
 * -wal, a data/ or a lock file of their own in the daemon's way. */
START_TEST(database_directory_others_can_write_is_refused)
{
    char dir[160];
    snprintf(dir, sizeof(dir), "%s/open", td.dir);
    ck_assert_int_eq(start_in_dir(dir, 0777, geteuid(), getegid(), "writable by other users"), 1);
    snprintf(dir, sizeof(dir), "%s/sticky", td.dir);
    ck_assert_int_eq(start_in_dir(dir, 01777, geteuid(), getegid(), "writable by other users"), 1);
    snprintf(dir, sizeof(dir), "%s/ours", td.dir);
    ck_assert_int_eq(start_in_dir(dir, 0755, geteuid(), getegid(), NULL), -1);
}
END_TEST

/* Group-writable: only by the group the daemon's files get (the service group), never by
 * another; and a directory of another user is refused (as root: it could swap the files). */
START_TEST(database_directory_of_others_is_refused)
{
    if (geteuid() != 0) {
        fprintf(stderr, "database_directory_of_others_is_refused: needs root (chown), skipped\n");
        return;
    }
    gid_t other = expected_group() == 65534 ? 65533 : 65534;
    char dir[160];
    snprintf(dir, sizeof(dir), "%s/group", td.dir);
    ck_assert_int_eq(start_in_dir(dir, 0770, 0, other, "writable by group"), 1);
    snprintf(dir, sizeof(dir), "%s/ourgroup", td.dir);
    ck_assert_int_eq(start_in_dir(dir, 0770, 0, expected_group(), NULL), -1);
    snprintf(dir, sizeof(dir), "%s/nobody", td.dir);
    ck_assert_int_eq(start_in_dir(dir, 0755, 65534, 0, "belongs to uid 65534"), 1);
}
END_TEST

/* The state directory (the server secret) follows the same rule. */
START_TEST(state_directory_others_can_write_is_refused)
{
    char dir[160];
    snprintf(dir, sizeof(dir), "%s/state", td.dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(chmod(dir, 0777), 0);
    char log[160];
    snprintf(log, sizeof(log), "%s/refused.log", td.dir);
    ck_assert_int_eq(start_daemon(td.sock, td.db, log, true), 1);
    ck_assert(file_contains(log, "writable by other users"));
}
END_TEST

/* A server secret the daemon's user cannot read (a daemon started by hand as root made it
 * before the service ran): the start fails, and the log says whose the file is. */
START_TEST(secret_of_another_user_is_named)
{
    if (geteuid() != 0) {
        fprintf(stderr, "secret_of_another_user_is_named: needs root (chown), skipped\n");
        return;
    }
    const uid_t nobody = 65534;
    char db_dir[160], state[160], secret[192], log[160], db[192], sock[192];
    snprintf(db_dir, sizeof(db_dir), "%s/nobody-db", td.dir);
    snprintf(state, sizeof(state), "%s/nobody-state", td.dir);
    snprintf(secret, sizeof(secret), "%s/secret", state);
    snprintf(db, sizeof(db), "%s/cache.db", db_dir);
    snprintf(sock, sizeof(sock), "%s/nobody.sock", db_dir);
    snprintf(log, sizeof(log), "%s/secret.log", td.dir);
    ck_assert_int_eq(mkdir(db_dir, 0700), 0);
    ck_assert_int_eq(mkdir(state, 0700), 0);
    FILE *f = fopen(secret, "w");
    ck_assert_ptr_nonnull(f);
    fputs("made by root", f);
    fclose(f);
    ck_assert_int_eq(chmod(secret, 0600), 0);
    ck_assert_int_eq(chown(db_dir, nobody, nobody), 0);
    ck_assert_int_eq(chown(state, nobody, nobody), 0); /* the secret stays root's */
    ck_assert_msg(start_daemon_as(sock, db, log, true, nobody, state) == 1,
        "peerdistd started on a secret it cannot read");
    ck_assert_msg(
        file_contains(log, "belongs to uid 0, mode 0600, and peerdistd runs as uid 65534"),
        "the log does not say whose the secret is");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("instance");
    TCase *lock = tcase_create("one daemon per directory");
    tcase_set_timeout(lock, 300);
    tcase_add_checked_fixture(lock, setup, teardown);
    tcase_add_test(lock, second_daemon_on_the_same_database_is_refused_under_load);
    tcase_add_test(lock, two_databases_in_one_directory_are_refused);
    tcase_add_test(lock, another_directory_on_the_same_socket_is_refused);
    tcase_add_test(lock, lock_is_released_by_sigkill);
    suite_add_tcase(s, lock);
    TCase *modes = tcase_create("nothing for others");
    tcase_set_timeout(modes, 120);
    tcase_add_checked_fixture(modes, setup_unstarted, teardown);
    tcase_add_test(modes, nothing_is_for_others_under_umask_022);
    tcase_add_test(modes, nothing_is_for_others_under_umask_000);
    tcase_add_test(modes, existing_files_lose_what_others_had);
    tcase_add_test(modes, database_directory_others_can_write_is_refused);
    tcase_add_test(modes, database_directory_of_others_is_refused);
    tcase_add_test(modes, state_directory_others_can_write_is_refused);
    tcase_add_test(modes, secret_of_another_user_is_named);
    suite_add_tcase(s, modes);
    return check_run(s);
}
