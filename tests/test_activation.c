/* SPDX-License-Identifier: MIT */
/*
 * test_activation.c - peerdistd under a service manager: socket activation through
 * systemd-socket-activate (the socket handed over is used, never removed or changed; READY=1
 * still sent), LISTEN_PID of another process ignored, a handed-over descriptor that is not a
 * listening unix stream socket refused, and running out of descriptors on accept (accepting
 * pauses with few log lines, existing connections are served, new ones once descriptors free).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <peerdist.h>

#include "check_run.h"
#include "harness.h"
#include "wire_util.h"

static struct test_daemon td;

static void setup(void)
{
    td_init(&td, "local");
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
}

static bool file_exists(void *arg)
{
    struct stat st;
    return lstat(arg, &st) == 0;
}

static bool socket_answers(void *arg)
{
    int fd = wu_connect(arg);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

/* Child: stdout and stderr to the test daemon's log. */
static void log_to_td(void)
{
    int f = open(td.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(f, 2);
    dup2(f, 1);
    if (f > 2)
        close(f);
}

static uint32_t get_status(int fd)
{
    Peerdist__GetStatusRequest gs = PEERDIST__GET_STATUS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
    req.get_status = &gs;
    return wu_status(fd, &req);
}

/* A datagram socket for NOTIFY_SOCKET at path. */
static int notify_socket(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(path), sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

START_TEST(activated_socket_is_used_and_left_in_place)
{
    if (system("command -v systemd-socket-activate >/dev/null") != 0) {
        fprintf(stderr, "test_activation: systemd-socket-activate missing; skipped\n");
        return;
    }
    char notify[128], env[160];
    snprintf(notify, sizeof(notify), "%s/notify", td.dir);
    snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", notify);
    int nfd = notify_socket(notify);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        log_to_td();
        /* It listens, then on the first connection execs peerdistd in the same process, so
         * LISTEN_PID is the daemon's pid. */
        execlp("systemd-socket-activate", "systemd-socket-activate", "-l", td.sock, "-E", env,
            PEERDISTD_PATH, "--socket", td.sock, "--db", td.db, "--config", td.conf, (char *)NULL);
        _exit(127);
    }
    td.pid = pid;
    /* Bound, then listening: a connection before listen() is refused. This one starts the
     * daemon, which then sees it close. */
    ck_assert(td_wait_until(socket_answers, td.sock));
    struct stat before;
    ck_assert_int_eq(lstat(td.sock, &before), 0);
    int fd = wu_open(td.sock); /* the first connection starts the daemon, then is served */
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(get_status(fd), ERROR_SUCCESS);
    char msg[256];
    ssize_t n = recv(nfd, msg, sizeof(msg) - 1, 0);
    ck_assert_int_gt(n, 0);
    msg[n] = 0;
    ck_assert_str_eq(msg, "READY=1");
    close(fd);
    ck_assert(td_log_contains(&td, "socket activation: listening on the socket handed over"));
    /* Stopped: the socket is the service manager's, left as it was (not removed, not made
     * 0666: that is SocketMode='s job, and the daemon says so). */
    kill(pid, SIGTERM);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    td.pid = 0;
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    struct stat after;
    ck_assert_int_eq(lstat(td.sock, &after), 0);
    ck_assert(S_ISSOCK(after.st_mode));
    ck_assert_uint_eq(after.st_ino, before.st_ino);
    ck_assert_uint_eq(after.st_mode, before.st_mode);
    if ((before.st_mode & 0666) != 0666)
        ck_assert(td_log_contains(&td, "so not every user can connect"));
    close(nfd);
}
END_TEST

/*
 * Runs peerdistd with descriptor 3 = fd3 (closed in the parent's view afterwards) and
 * LISTEN_FDS=1; LISTEN_PID is the child's own pid if own_pid, else 1. Returns the pid.
 */
static pid_t start_with_fd3(int fd3, bool own_pid)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        log_to_td();
        if (dup2(fd3, 3) != 3)
            _exit(126);
        char p[32];
        snprintf(p, sizeof(p), "%d", own_pid ? (int)getpid() : 1);
        setenv("LISTEN_PID", p, 1);
        setenv("LISTEN_FDS", "1", 1);
        execl(PEERDISTD_PATH, "peerdistd", "--socket", td.sock, "--db", td.db, "--config", td.conf,
            (char *)NULL);
        _exit(127);
    }
    return pid;
}

START_TEST(listen_pid_of_another_process_is_ignored)
{
    /* A listening socket elsewhere as descriptor 3: not for this process, so not used. */
    char other[128];
    snprintf(other, sizeof(other), "%s/other.sock", td.dir);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(other), sizeof(sun.sun_path));
    memcpy(sun.sun_path, other, strlen(other) + 1);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    ck_assert_int_eq(listen(lfd, 4), 0);
    td.pid = start_with_fd3(lfd, false);
    close(lfd);
    ck_assert(td_wait_until(socket_answers, td.sock)); /* bound its own */
    ck_assert(td_log_contains(&td, "LISTEN_PID=1 is not this process"));
    int fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(get_status(fd), ERROR_SUCCESS);
    close(fd);
    ck_assert_int_eq(td_stop(&td), 0);
    ck_assert(!file_exists(td.sock)); /* its own socket: removed at exit */
    ck_assert(file_exists(other));
}
END_TEST

static int exit_status(pid_t pid)
{
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

START_TEST(handed_over_descriptor_must_be_a_listening_unix_stream_socket)
{
    int null = open("/dev/null", O_RDONLY);
    ck_assert_int_eq(exit_status(start_with_fd3(null, true)), 1);
    close(null);
    ck_assert(td_log_contains(&td, "socket activation: descriptor 3 is not a socket"));
    int sp[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    ck_assert_int_eq(exit_status(start_with_fd3(sp[0], true)), 1);
    ck_assert(td_log_contains(&td, "descriptor 3 is not listening"));
    close(sp[0]);
    close(sp[1]);
    int dg = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_eq(exit_status(start_with_fd3(dg, true)), 1);
    ck_assert(td_log_contains(&td, "descriptor 3 is not a stream socket"));
    close(dg);
    /* Nothing was bound in its place. */
    ck_assert(!file_exists(td.sock));
}
END_TEST

/* ---- out of descriptors ---- */

static int count_fds(pid_t pid)
{
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "ls /proc/%d/fd | wc -l", (int)pid);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static bool accept_paused(void *arg)
{
    return td_log_contains(&td, "accept: Too many open files; not accepting for");
}

#define CLIENTS 40

/*
 * The group the daemon runs with: as root it takes group peerdist when that exists
 * (fsutil.h). Started with that group as its real, effective and saved group, it keeps its
 * ids as they were, so a process of the same ids may change its limits without
 * CAP_SYS_RESOURCE (prlimit(2)).
 */
static gid_t daemon_gid(void)
{
    struct group *gr = geteuid() == 0 ? getgrnam("peerdist") : NULL;
    return gr ? gr->gr_gid : getgid();
}

static void start_as(gid_t gid)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        log_to_td();
        if (setresgid(gid, gid, gid) != 0)
            _exit(126);
        execl(PEERDISTD_PATH, "peerdistd", "--socket", td.sock, "--db", td.db, "--config", td.conf,
            (char *)NULL);
        _exit(127);
    }
    td.pid = pid;
    ck_assert(td_wait_until(socket_answers, td.sock));
}

/* setrlimit on another process, from a child with the daemon's ids: 0 or an errno. */
static int limit_descriptors(pid_t target, gid_t gid, rlim_t n)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit rl = {n, n};
        if (setresgid(gid, gid, gid) != 0)
            _exit(errno);
        _exit(prlimit(target, RLIMIT_NOFILE, &rl, NULL) == 0 ? 0 : errno);
    }
    return exit_status(pid);
}

START_TEST(out_of_descriptors_pauses_accepting)
{
    gid_t gid = daemon_gid();
    start_as(gid);
    int first = wu_open(td.sock);
    ck_assert_int_ge(first, 0);
    /* Lower the running daemon's descriptor limit to a few above what it holds: the limit it
     * fitted max_connections to at start no longer holds, so accept meets EMFILE. */
    int err = limit_descriptors(td.pid, gid, (rlim_t)count_fds(td.pid) + 6);
    ck_assert_msg(err == 0, "prlimit: %s", strerror(err));
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = wu_connect(td.sock); /* queued in the backlog past the limit */
        ck_assert_int_ge(fds[i], 0);
    }
    ck_assert(td_wait_until(accept_paused, NULL));
    /* An existing connection is served while accepting pauses. */
    for (int i = 0; i < 20; i++)
        ck_assert_uint_eq(get_status(first), ERROR_SUCCESS);
    /* Descriptors come back: a new client is served. */
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    int fresh = wu_open(td.sock);
    ck_assert_msg(fresh >= 0, "a new client was not served once descriptors were free");
    ck_assert_uint_eq(get_status(fresh), ERROR_SUCCESS);
    ck_assert_uint_eq(get_status(first), ERROR_SUCCESS);
    close(fresh);
    close(first);
    /* One line per pause at most, each counting its failures: not one per failed accept. */
    int lines = td_log_count(&td, "accept: ");
    ck_assert_msg(lines >= 1 && lines < 40, "%d accept lines", lines);
    ck_assert_int_eq(td_stop(&td), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("activation");
    TCase *tc = tcase_create("activation");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, activated_socket_is_used_and_left_in_place);
    tcase_add_test(tc, listen_pid_of_another_process_is_ignored);
    tcase_add_test(tc, handed_over_descriptor_must_be_a_listening_unix_stream_socket);
    tcase_add_test(tc, out_of_descriptors_pauses_accepting);
    suite_add_tcase(s, tc);
    return check_run(s);
}
