/* SPDX-License-Identifier: MIT */
/*
 * harness.h - integration-test helpers: run the real peerdistd on a
 * throw-away socket, database and configuration file in a private directory.
 */
#ifndef PEERDIST_TEST_HARNESS_H
#define PEERDIST_TEST_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

struct test_daemon {
    pid_t pid;
    char dir[64];
    char sock[128];
    char db[128];
    char conf[128];
    char log[128];
};

/* Creates the directory (mode 0711, so other users reach the 0666 socket) and a config. */
void td_init(struct test_daemon *d, const char *mode);
/* Rewrites the configuration file's mode (then td_signal(d, SIGHUP) to apply it). */
void td_set_mode(struct test_daemon *d, const char *mode);
/* Appends lines (each ending in a newline) to the configuration file, for the next start. */
void td_config_append(struct test_daemon *d, const char *lines);
/* Starts peerdistd and waits until its socket answers; sets PEERDIST_SOCKET. */
void td_start(struct test_daemon *d);
/* SIGTERM and wait; returns the exit status. */
int td_stop(struct test_daemon *d);
void td_kill(struct test_daemon *d);
void td_signal(struct test_daemon *d, int sig);
void td_cleanup(struct test_daemon *d);
/* True if the daemon's log contains needle. */
bool td_log_contains(struct test_daemon *d, const char *needle);
/* How many lines of the daemon's log contain needle. */
int td_log_count(struct test_daemon *d, const char *needle);
/* Runs one SQL statement on the daemon's database; returns the first column of the first row. */
long long td_sql(struct test_daemon *d, const char *sql);

/*
 * Waiting on a condition instead of sleeping for a guessed time. TD_WAIT_MS is far above
 * any honest wait, so only a broken behaviour reaches it.
 */
#define TD_WAIT_MS 30000
/* Checks cond(arg) every millisecond until it holds or TD_WAIT_MS pass; whether it held. */
bool td_wait_until(bool (*cond)(void *arg), void *arg);
/* SIGSTOP, then waits until every thread of the daemon is stopped (state T in
 * /proc/PID/task/TID/stat): from then on it reads and answers nothing until td_resume. */
void td_pause(struct test_daemon *d);
void td_resume(struct test_daemon *d);
/*
 * What this process has written to the daemon and the daemon has not read yet: SIOCOUTQ
 * summed over this process's sockets connected to d->sock (the kernel counts buffer space,
 * so more than the payload). While the daemon is paused it only grows: when it grows past
 * an earlier reading, another request has gone out.
 */
long td_unread(struct test_daemon *d);
/* True if the daemon's event loop (its main thread) sleeps in epoll_wait: nothing that it
 * watches is ready. A client's unread requests then mean the daemon stopped watching it. */
bool td_loop_idle(struct test_daemon *d);
/*
 * True if every other thread of this process sleeps in poll (/proc/self/task/TID): it waits
 * there until a descriptor it polls is ready, outside malloc. With nothing to wake it (the
 * daemon paused, no call of this thread), a fork now leaves the child no allocator lock held
 * by a thread that is not there: ASan's allocator (GCC 12's libasan) takes none around
 * fork(), glibc's malloc does.
 */
bool td_others_sleep_in_poll(void *arg);

#endif
