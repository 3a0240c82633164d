/* SPDX-License-Identifier: MIT */
/*
 * harness.c - starts and stops the real peerdistd for integration tests
 * (the path comes from PEERDISTD_PATH, set by CMake).
 */
#include "harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <signal.h>
#include <stddef.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

void td_set_mode(struct test_daemon *d, const char *mode)
{
    FILE *f = fopen(d->conf, "w");
    ck_assert_ptr_nonnull(f);
    /* A private state directory: the daemon writes its server secret there. */
    fprintf(f, "[peerdistd]\nmode = %s\nlog_level = debug\nstate_dir = %s/state\n", mode, d->dir);
    fclose(f);
}

void td_config_append(struct test_daemon *d, const char *lines)
{
    FILE *f = fopen(d->conf, "a");
    ck_assert_ptr_nonnull(f);
    fputs(lines, f);
    ck_assert_int_eq(fclose(f), 0);
}

void td_init(struct test_daemon *d, const char *mode)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/pdtest.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d->dir));
    chmod(d->dir, 0711);
    snprintf(d->sock, sizeof(d->sock), "%s/peerdistd.sock", d->dir);
    snprintf(d->db, sizeof(d->db), "%s/cache.db", d->dir);
    snprintf(d->conf, sizeof(d->conf), "%s/peerdistd.conf", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/peerdistd.log", d->dir);
    td_set_mode(d, mode ? mode : "local");
    setenv("PEERDIST_SOCKET", d->sock, 1);
}

static bool socket_answers(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path) >= sizeof(sun.sun_path))
        return false;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    bool ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    return ok;
}

void td_start(struct test_daemon *d)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        dup2(fd, 1);
        execl(PEERDISTD_PATH, "peerdistd", "--socket", d->sock, "--db", d->db, "--config", d->conf,
            (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < 500 && !socket_answers(d->sock); i++) {
        int status;
        ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "peerdistd exited at start-up");
        usleep(10000);
    }
    ck_assert_msg(socket_answers(d->sock), "peerdistd did not start listening");
}

int td_stop(struct test_daemon *d)
{
    int status = -1;
    if (d->pid > 0) {
        kill(d->pid, SIGCONT);
        kill(d->pid, SIGTERM);
        waitpid(d->pid, &status, 0);
        d->pid = 0;
    }
    return status;
}

void td_kill(struct test_daemon *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

void td_signal(struct test_daemon *d, int sig)
{
    ck_assert_int_gt(d->pid, 0);
    kill(d->pid, sig);
}

void td_cleanup(struct test_daemon *d)
{
    td_kill(d);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", d->dir);
}

bool td_log_contains(struct test_daemon *d, const char *needle)
{
    return td_log_count(d, needle) > 0;
}

int td_log_count(struct test_daemon *d, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    if (!f)
        return 0;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

long long td_sql(struct test_daemon *d, const char *sql)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(d->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s;
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql,
        sqlite3_errmsg(db));
    long long v = -1;
    int rc = sqlite3_step(s);
    ck_assert(rc == SQLITE_ROW || rc == SQLITE_DONE);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

bool td_wait_until(bool (*cond)(void *arg), void *arg)
{
    for (int ms = 0; ms < TD_WAIT_MS; ms++) {
        if (cond(arg))
            return true;
        usleep(1000); /* the polling interval, not a guess at how long anything takes */
    }
    return cond(arg);
}

/* The state letter of /proc/PID/task/TID/stat ("pid (comm) S ..."; comm may hold spaces). */
static char task_state(pid_t pid, const char *tid)
{
    char path[96], line[512];
    if ((size_t)snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, tid) >=
        sizeof(path))
        return '?';
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    char *end = fgets(line, sizeof(line), f) ? strrchr(line, ')') : NULL;
    fclose(f);
    return end && end[1] == ' ' ? end[2] : '?';
}

static bool all_threads_stopped(void *arg)
{
    pid_t pid = ((struct test_daemon *)arg)->pid;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return false;
    bool stopped = true;
    for (struct dirent *e; stopped && (e = readdir(dir));)
        if (e->d_name[0] != '.')
            stopped = task_state(pid, e->d_name) == 'T';
    closedir(dir);
    return stopped;
}

void td_pause(struct test_daemon *d)
{
    td_signal(d, SIGSTOP);
    ck_assert_msg(td_wait_until(all_threads_stopped, d), "peerdistd did not stop on SIGSTOP");
}

void td_resume(struct test_daemon *d)
{
    td_signal(d, SIGCONT);
}

long td_unread(struct test_daemon *d)
{
    DIR *dir = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(dir);
    long total = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        int fd = atoi(e->d_name);
        struct sockaddr_un peer = {0};
        socklen_t len = sizeof(peer);
        int queued;
        /* A client socket's peer name is the address the daemon listens on. */
        if (e->d_name[0] == '.' || fd == dirfd(dir) ||
            getpeername(fd, (struct sockaddr *)&peer, &len) != 0 || peer.sun_family != AF_UNIX ||
            len <= offsetof(struct sockaddr_un, sun_path) || strcmp(peer.sun_path, d->sock) != 0 ||
            ioctl(fd, SIOCOUTQ, &queued) != 0)
            continue;
        total += queued;
    }
    closedir(dir);
    return total;
}

/* The system call number /proc/PID/task/TID/syscall names, -1 when the task is not blocked
 * in one ("running") or is gone. */
static long task_syscall(pid_t pid, const char *tid)
{
    char path[96], line[128];
    snprintf(path, sizeof(path), "/proc/%d/task/%s/syscall", (int)pid, tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long nr = -1;
    if (fgets(line, sizeof(line), f) && line[0] >= '0' && line[0] <= '9')
        nr = strtol(line, NULL, 10);
    fclose(f);
    return nr;
}

bool td_loop_idle(struct test_daemon *d)
{
    char tid[16], path[96], line[128];
    snprintf(tid, sizeof(tid), "%d", (int)d->pid);
    if (task_state(d->pid, tid) != 'S')
        return false;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)d->pid, (int)d->pid);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    long nr = -1;
    if (fgets(line, sizeof(line), f))
        nr = strtol(line, NULL, 10); /* "running" when it is not blocked in a system call */
    fclose(f);
#ifdef SYS_epoll_wait
    if (nr == SYS_epoll_wait)
        return true;
#endif
#ifdef SYS_epoll_pwait2
    if (nr == SYS_epoll_pwait2)
        return true;
#endif
    return nr == SYS_epoll_pwait;
}

static bool is_poll(long nr)
{
#ifdef SYS_poll
    if (nr == SYS_poll)
        return true;
#endif
    return nr == SYS_ppoll;
}

bool td_others_sleep_in_poll(void *arg)
{
    (void)arg;
    pid_t self = getpid();
    char me[16];
    snprintf(me, sizeof(me), "%ld", (long)syscall(SYS_gettid));
    DIR *dir = opendir("/proc/self/task");
    if (!dir)
        return false;
    bool asleep = true;
    for (struct dirent *e; asleep && (e = readdir(dir));) {
        char tid[16]; /* a thread id: its path fits the buffers above */
        snprintf(tid, sizeof(tid), "%.15s", e->d_name);
        if (tid[0] == '.' || strcmp(tid, me) == 0)
            continue;
        asleep = task_state(self, tid) == 'S' && is_poll(task_syscall(self, tid));
    }
    closedir(dir);
    return asleep;
}
