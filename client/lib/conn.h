/* SPDX-License-Identifier: MIT */
/*
 * conn.h - one instance's connection to peerdistd: Hello, request ids,
 * synchronous calls done on the caller's thread, asynchronous operations
 * completed by whichever thread reads their reply, reconnection, and the
 * status-change registration. See client/README.md for the threading model.
 */
#ifndef PEERDIST_CONN_H
#define PEERDIST_CONN_H

#include <peerdist.h>
#include <stdint.h>

#include "frame.h"
#include "win32.h"

#define PD_DEFAULT_SOCKET "/run/peerdist/peerdistd.sock"
/*
 * How long a synchronous call (or an asynchronous call's write) waits for the daemon before
 * giving up on the connection; the environment variable PEERDIST_CALL_TIMEOUT_MS overrides
 * it per instance. The Hello waits at most PD_HELLO_TIMEOUT_MS of it.
 */
#define PD_CALL_TIMEOUT_MS 30000
#define PD_HELLO_TIMEOUT_MS 5000
/* While a status registration waits for the daemon to come back, retry this often. */
#define PD_RECONNECT_INTERVAL_MS 200
/* ... and this often while the daemon refuses the connection (ERROR_REQ_NOT_ACCEP). */
#define PD_REFUSED_RETRY_MS 1000

struct pdconn;
struct pd_op;

/*
 * Turns an async reply into (status, bytes); may also fill OVERLAPPED fields
 * or copy data into the caller's buffer. reply is NULL when the operation
 * ends without one (connection lost: status SERVICE_UNAVAILABLE; instance
 * shut down: OPERATION_ABORTED) so per-operation state can still be freed.
 * Runs on the thread that read the reply, before the completion is delivered.
 */
typedef void (
    *pd_reply_fn)(struct pd_op *op, const Peerdist__Reply *reply, DWORD *status, DWORD *bytes);

struct pd_async {
    LPOVERLAPPED ov;
    HANDLE port;
    ULONG_PTR key;
    pd_reply_fn on_reply; /* NULL: status from the reply, 0 bytes */
    /*
     * Runs once, after the completion was delivered (OVERLAPPED filled, event set, packet
     * posted): a caller waiting for the operation to be over (Cancel) may stop waiting.
     */
    void (*on_delivered)(void *arg);
    void *arg;
    uint64_t *request_id; /* if set and *request_id is 0: receives the (first) request id */
};

/* socket path: PEERDIST_SOCKET or PD_DEFAULT_SOCKET. */
const char *pdconn_default_path(void);

/* Creates the connection object and tries to connect; NULL only when out of memory. */
struct pdconn *pdconn_new(const char *path);
/*
 * pdconn_new, but each connection attempt (connect() and the Hello reply) waits at most
 * connect_timeout_ms instead of PD_HELLO_TIMEOUT_MS (peerdistctl fails fast on a wedged
 * daemon with it); <= 0 means PD_HELLO_TIMEOUT_MS.
 */
struct pdconn *pdconn_new_timeout(const char *path, int connect_timeout_ms);
/*
 * Aborts what is pending (ERROR_OPERATION_ABORTED), closes the socket and
 * stops the reader thread; later calls fail with SERVICE_UNAVAILABLE.
 */
void pdconn_stop(struct pdconn *c);
/* pdconn_stop, then frees. Nobody else may use c any more. */
void pdconn_free(struct pdconn *c);
/*
 * In a child after fork(), single-threaded: closes the child's copies of c's descriptors
 * (the parent's connection stays as it is), touching nothing else. c is never used again.
 */
void pdconn_forget_in_child(struct pdconn *c);

/*
 * Connects if needed. 0 with the connection's generation (it changes at every reconnect, so
 * older daemon-side handles are known dead; a connection the daemon closed while idle is
 * noticed only by the next request's write, which then reconnects),
 * or the synchronous error: PEERDIST_ERROR_SERVICE_UNAVAILABLE, or ERROR_REQ_NOT_ACCEP
 * when the daemon refused the connection (its owner is over a connection limit).
 */
DWORD pdconn_ensure(struct pdconn *c, uint64_t *generation);
/*
 * 0 when connected; else why the last connection attempt failed as an errno value, for
 * messages (ENOENT, ECONNREFUSED, EACCES from connect(); ETIMEDOUT: no connection or no
 * Hello reply in time; ECONNRESET: closed before the Hello reply; EPROTO: the reply was not
 * a peerdist Hello; EUSERS: refused, over a connection limit), with *status (if not NULL)
 * the synchronous error calls get meanwhile. Does not try to connect.
 */
int pdconn_down_reason(struct pdconn *c, DWORD *status);
/* PEERDIST_STATUS as last told by the daemon; UNAVAILABLE when not connected. */
uint32_t pdconn_status(struct pdconn *c);

/*
 * Synchronous round trip, connecting if needed, over within the call deadline
 * (PD_CALL_TIMEOUT_MS). Returns the reply's status, or the synchronous error;
 * *reply (may be NULL) is the caller's.
 */
DWORD pdconn_call(struct pdconn *c, Peerdist__Request *req, Peerdist__Reply **reply);
/*
 * pdconn_call, with *generation the connection the request went out on (daemon-side
 * handles its reply names belong to it; a call may reconnect, pdconn_ensure).
 */
DWORD pdconn_call_sent_on(struct pdconn *c, Peerdist__Request *req, Peerdist__Reply **reply,
    uint64_t *generation);
/*
 * pdconn_call for a request naming daemon-side handles of the connection `generation`
 * (0: any): on another connection it is not sent, PEERDIST_ERROR_INVALIDATED.
 */
DWORD pdconn_call_on(struct pdconn *c, uint64_t generation, Peerdist__Request *req,
    Peerdist__Reply **reply);
/* pdconn_call_on, with the descriptor pass_fd (>= 0) sent along (SCM_RIGHTS; still the caller's). */
DWORD pdconn_call_fd(struct pdconn *c, uint64_t generation, Peerdist__Request *req, int pass_fd,
    Peerdist__Reply **reply);
/*
 * Sends an asynchronous request (on the connection `generation`, as pdconn_call_on). 0:
 * sent whole (or, while waiters read, corked: sent with the next write, conn.c), and
 * exactly one completion will follow; otherwise the synchronous error and no completion.
 * The write waits at most the call deadline.
 */
DWORD pdconn_submit(struct pdconn *c, uint64_t generation, Peerdist__Request *req,
    const struct pd_async *a);

/*
 * Sends n requests that complete one OVERLAPPED together (a buffer split into
 * PD_MAX_CHUNK pieces), all on one connection: on_reply runs per part, the completion's
 * bytes are the parts' sum and its status the first failure. Returns like pdconn_submit.
 */
DWORD pdconn_submit_many(struct pdconn *c, uint64_t generation, Peerdist__Request **reqs, size_t n,
    const struct pd_async *a);

/* For on_reply callbacks: the operation's pd_async.arg. */
void *pd_op_arg(const struct pd_op *op);

/*
 * A thread about to block waiting for t (win32.c: an OVERLAPPED, events, or a port) calls
 * this first. If an asynchronous operation whose completion reaches t is pending on some
 * connection that nobody reads (or only the background thread, which hands the token over),
 * it reads that connection once on the caller's thread, for at most timeout_ms (< 0: a
 * slice), delivering every reply it finds to its owner, and returns 1: the caller checks
 * its wait and calls again. wake_fd (an eventfd) readable ends the read early: the waker
 * of t writes it. 0: nothing to read for t here; block as usual.
 */
int pdconn_help_wait(const struct w32_wait_target *t, int wake_fd, int timeout_ms);

/* Status-change notification (one per connection). */
DWORD pdconn_register_status(struct pdconn *c, BOOL ex, LPOVERLAPPED ov, HANDLE port, ULONG_PTR key,
    void *out);
void pdconn_unregister_status(struct pdconn *c);

#endif
