/*
 * harness.c - starts and stops the real peerdistd for integration tests
 * (the path comes from PEERDISTD_PATH, set by CMake).
 */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
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
        execl(PEERDISTD_PATH, "peerdistd", "--socket", d->sock, "--db", d->db, "--config",
            d->conf, (char *)NULL);
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
    FILE *f = fopen(d->log, "r");
    if (!f)
        return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
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
