/* SPDX-License-Identifier: MIT */
/*
 * worker.c - the thread pool behind worker.h. Jobs go to the workers through
 * a mutex-protected queue; finished jobs come back through a second queue and
 * an eventfd the loop watches (memcached hands work between threads the same
 * explicit way).
 */
#include "worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

struct job {
    worker_fn work, done;
    void *arg;
    struct job *next;
};

struct job_queue {
    struct job *head, *tail;
};

struct worker_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job_queue todo, finished;
    bool stop;
    int nthreads;
    pthread_t *threads;
    int efd;
    struct event *ev;
};

static void push(struct job_queue *q, struct job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static struct job *pop(struct job_queue *q)
{
    struct job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
    }
    return j;
}

static void *worker_main(void *arg)
{
    struct worker_pool *wp = arg;
    pthread_mutex_lock(&wp->mu);
    for (;;) {
        struct job *j = pop(&wp->todo);
        if (!j) {
            if (wp->stop)
                break;
            pthread_cond_wait(&wp->cv, &wp->mu);
            continue;
        }
        pthread_mutex_unlock(&wp->mu);
        if (j->work)
            j->work(j->arg);
        pthread_mutex_lock(&wp->mu);
        bool was_empty = wp->finished.head == NULL;
        push(&wp->finished, j);
        if (was_empty) {
            uint64_t one = 1;
            (void)!write(wp->efd, &one, sizeof(one));
        }
    }
    pthread_mutex_unlock(&wp->mu);
    return NULL;
}

/* Loop thread: runs the done of every finished job. */
static void run_finished(struct worker_pool *wp)
{
    uint64_t v;
    (void)!read(wp->efd, &v, sizeof(v));
    pthread_mutex_lock(&wp->mu);
    struct job *list = wp->finished.head;
    wp->finished.head = wp->finished.tail = NULL;
    pthread_mutex_unlock(&wp->mu);
    while (list) {
        struct job *j = list;
        list = j->next;
        if (j->done)
            j->done(j->arg);
        free(j);
    }
}

static void finished_cb(evutil_socket_t fd, short what, void *arg)
{
    run_finished(arg);
}

struct worker_pool *worker_pool_new(struct event_base *base, int threads)
{
    struct worker_pool *wp = calloc(1, sizeof(*wp));
    if (!wp)
        return NULL;
    pthread_mutex_init(&wp->mu, NULL);
    pthread_cond_init(&wp->cv, NULL);
    wp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    wp->threads = calloc((size_t)threads, sizeof(pthread_t));
    wp->ev = wp->efd >= 0 ? event_new(base, wp->efd, EV_READ | EV_PERSIST, finished_cb, wp) : NULL;
    if (!wp->threads || !wp->ev || event_add(wp->ev, NULL) != 0)
        goto fail;
    /* Signals are the loop's (libevent): a worker must never take a TERM whose disposition
     * is momentarily the default one while the daemon stops (main.c). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (; wp->nthreads < threads; wp->nthreads++) {
        if (pthread_create(&wp->threads[wp->nthreads], NULL, worker_main, wp) != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (wp->nthreads < threads)
        goto fail;
    return wp;
fail:
    log_error("cannot start the worker threads");
    worker_pool_free(wp);
    return NULL;
}

void worker_pool_free(struct worker_pool *wp)
{
    if (!wp)
        return;
    pthread_mutex_lock(&wp->mu);
    wp->stop = true;
    pthread_cond_broadcast(&wp->cv);
    pthread_mutex_unlock(&wp->mu);
    for (int i = 0; i < wp->nthreads; i++)
        pthread_join(wp->threads[i], NULL);
    if (wp->efd >= 0)
        run_finished(wp); /* every submitted job gets its done */
    if (wp->ev)
        event_free(wp->ev);
    if (wp->efd >= 0)
        close(wp->efd);
    free(wp->threads);
    pthread_mutex_destroy(&wp->mu);
    pthread_cond_destroy(&wp->cv);
    free(wp);
}

int worker_submit(struct worker_pool *wp, worker_fn work, worker_fn done, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (!j)
        return -1;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&wp->mu);
    push(&wp->todo, j);
    pthread_cond_signal(&wp->cv);
    pthread_mutex_unlock(&wp->mu);
    return 0;
}
