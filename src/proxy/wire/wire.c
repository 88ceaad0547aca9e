/*
 * The proxy's socket I/O for plain TCP connections in steady state (the hot path: docs/proxy.md "Native socket
 * I/O"), written in C because
 * Node's per-socket machinery costs more CPU than the forwarding itself: every read is a libuv callback into
 * JavaScript through a Readable stream, and every write a Writable stream entry, several microseconds per
 * statement on a 2-core machine where the proxy competes with pgbench and PostgreSQL for the CPUs.
 *
 * Here a socket is a uv_poll_t on Node's own event loop. A readable socket is read at once into one shared arena
 * and the read is recorded as an event; after libuv's poll phase (a uv_check handle) every event of that loop turn
 * reaches JavaScript in ONE call, which frames and forwards them. (A call per read, as PgBouncer forwards one
 * socket at a time, was tried: it cost 2-5 µs more CPU per transaction and gained no throughput in bench:proxy.)
 * What the kernel does not take of a send is copied into the wire's own queue and flushed when the socket is
 * writable. JavaScript never holds on to the arena past its call (the framer copies what it keeps, see
 * MessageFramer.own).
 *
 * Forwarded bytes are ranges of the arena: JavaScript does not call into C for them but appends (slot, offset,
 * length) to the outbox, which is sent when the call returns, or earlier when JavaScript calls into C for that or
 * any other wire (a write of its own bytes, end, close, adopt), so that everything goes out in the order it was
 * written. A call across N-API per forwarded message cost as much as the rest of its forwarding.
 * Unsent bytes per slot are kept in an Int32Array JavaScript reads as writableLength (back pressure).
 *
 * Event layout (Int32Array shared with JavaScript, 4 ints per event): kind, slot, offset, length.
 *   DATA  arena[offset, offset+length) was read from the socket
 *   EOF   the peer closed its side
 *   ERROR length is -errno of a failed read or send
 *   DRAIN the queue of unsent bytes emptied
 * Outbox layout (Int32Array): [0] the number of entries, then 3 ints per entry: slot, offset, length.
 * Pure N-API and libuv (both from Node's own headers), so the module works with any Node >= 20 it is built for.
 */
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

enum { EV_DATA = 1, EV_EOF = 2, EV_ERROR = 3, EV_DRAIN = 4 };
enum { EVENT_INTS = 4, OUTBOX_INTS = 3 };
/* Largest single read; also the least arena space left before the batch is handed over early. */
enum { READ_SIZE = 64 * 1024 };

typedef struct Instance Instance;

typedef struct Wire {
  uv_poll_t poll;
  Instance *inst;
  int fd;
  int slot;
  int events;        /* what the poll handle watches now */
  int paused;        /* JavaScript stopped reading */
  int read_done;     /* EOF or a read error was reported: nothing more to read */
  int ending;        /* end(): shut the write side once the queue is flushed */
  int failed;        /* a send failed: writes are dropped */
  int late_error;    /* errno of a send that failed in an outbox flush during a delivery, reported after it */
  int closed;        /* close() was called: the handle is closing */
  char *queue;       /* unsent bytes: queue[queue_off, queue_len) */
  size_t queue_off;
  size_t queue_len;
  size_t queue_cap;
} Wire;

/*
 * One per Node environment (the main thread, and each worker thread that loads the module): its own arena, event
 * list, outbox and slots on its own thread's event loop. Nothing here is shared between threads.
 */
typedef struct Instance {
  int ready;
  napi_env env;
  uv_loop_t *loop;
  uv_check_t check;
  napi_ref arena_ref;
  char *arena;
  size_t arena_cap;
  size_t arena_used;
  napi_ref events_ref;
  int32_t *events;
  size_t events_cap; /* in events */
  size_t event_count;
  napi_ref callback_ref;
  napi_async_context async_context;
  int32_t *outbox;
  size_t outbox_cap; /* in entries */
  int32_t *pending;  /* unsent bytes per slot, read by JavaScript */
  size_t pending_cap;
  struct Wire **late; /* wires whose late_error is to be reported once the delivery is over */
  size_t late_count;
  size_t late_cap;
  napi_ref outbox_ref;
  napi_ref pending_ref;
  Wire **slots;
  size_t slot_cap;
  int *free_slots;
  size_t free_count;
  size_t next_slot;
  int delivering;
  size_t handles_open;  /* uv handles (the check and every wire's poll) not closed yet */
  napi_async_cleanup_hook_handle cleanup; /* non-NULL: the environment is going away; done once handles_open is 0 */
} Instance;

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error(env, "PGW_NATIVE_WIRE", "native wire: " #call " failed"); \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static napi_value number(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static napi_value undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

static void deliver(Instance *I);
static void flush_outbox(Instance *I);

static void push_event(Instance *I, int kind, int slot, size_t offset, ssize_t length) {
  if (I->event_count == I->events_cap) deliver(I);
  /* Only poll callbacks record events, never JavaScript's calls during a delivery: the list is empty again here. */
  if (I->event_count == I->events_cap) abort();
  int32_t *e = I->events + I->event_count * EVENT_INTS;
  e[0] = kind;
  e[1] = slot;
  e[2] = (int32_t)offset;
  e[3] = (int32_t)length;
  I->event_count++;
}

static void report_late_errors(Instance *I);

/*
 * Hands every recorded event to JavaScript in one call, then sends what it wrote (the outbox); the arena and the
 * event list are free again after it. Sends that failed meanwhile are reported in a further call.
 */
static void deliver(Instance *I) {
  if (I->delivering) return;
  while (I->event_count > 0) {
    napi_env env = I->env;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value callback, global, argv[1], result;
    napi_get_reference_value(env, I->callback_ref, &callback);
    napi_get_global(env, &global);
    napi_create_uint32(env, (uint32_t)I->event_count, &argv[0]);
    I->delivering = 1;
    napi_status status = napi_make_callback(env, I->async_context, global, callback, 1, argv, &result);
    I->delivering = 0;
    I->event_count = 0;
    flush_outbox(I);
    I->arena_used = 0;
    report_late_errors(I);
    if (status == napi_pending_exception) {
      napi_value error;
      napi_get_and_clear_last_exception(env, &error);
      napi_fatal_exception(env, error);
    }
    napi_close_handle_scope(env, scope);
  }
}

static void on_check(uv_check_t *handle) { deliver((Instance *)handle->data); }

static void on_poll(uv_poll_t *handle, int status, int events);

static void set_watch(Wire *w) {
  if (w->closed) return;
  int events = 0;
  if (!w->paused && !w->read_done) events |= UV_READABLE;
  if (w->queue_len > w->queue_off) events |= UV_WRITABLE;
  if (events == w->events) return;
  w->events = events;
  if (events == 0) uv_poll_stop(&w->poll);
  else uv_poll_start(&w->poll, events, on_poll);
}

static void set_pending(Wire *w) {
  size_t n = w->queue_len - w->queue_off;
  w->inst->pending[w->slot] = n > INT32_MAX ? INT32_MAX : (int32_t)n;
}

/* A failed send or read: nothing more is read or written, and what was queued is dropped. */
static void mark_failed(Wire *w) {
  w->failed = 1;
  w->read_done = 1;
  w->queue_off = w->queue_len = 0;
  set_pending(w);
  set_watch(w);
}

/* A failure found by the loop (not by a call from JavaScript, which gets the errno back): reported as an event. */
static void fail_wire(Wire *w, int error) {
  if (w->failed) return;
  mark_failed(w);
  push_event(w->inst, EV_ERROR, w->slot, 0, -error);
}

/* Sends as much of the queue as the kernel takes. */
static void flush(Wire *w) {
  while (w->queue_off < w->queue_len) {
    ssize_t n = send(w->fd, w->queue + w->queue_off, w->queue_len - w->queue_off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail_wire(w, errno);
      return;
    }
    w->queue_off += (size_t)n;
  }
  if (w->queue_off == w->queue_len) {
    w->queue_off = w->queue_len = 0;
    if (w->queue_cap > 4 * READ_SIZE) {
      free(w->queue);
      w->queue = NULL;
      w->queue_cap = 0;
    }
    push_event(w->inst, EV_DRAIN, w->slot, 0, 0);
    if (w->ending) shutdown(w->fd, SHUT_WR);
  }
  set_pending(w);
  set_watch(w);
}

static void read_once(Wire *w) {
  Instance *I = w->inst;
  if (I->arena_cap - I->arena_used < READ_SIZE) deliver(I);
  if (w->read_done || w->paused || w->closed) return; /* JavaScript may have paused or closed it during that delivery */
  size_t room = I->arena_cap - I->arena_used;
  if (room > READ_SIZE) room = READ_SIZE;
  ssize_t n;
  do {
    n = recv(w->fd, I->arena + I->arena_used, room, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    push_event(I, EV_DATA, w->slot, I->arena_used, n);
    I->arena_used += (size_t)n;
  } else if (n == 0) {
    w->read_done = 1;
    set_watch(w);
    push_event(I, EV_EOF, w->slot, 0, 0);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    fail_wire(w, errno);
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  Wire *w = (Wire *)handle->data;
  if (status < 0) {
    fail_wire(w, -status);
    return;
  }
  if (w->closed) return;
  if ((events & UV_WRITABLE) && w->queue_len > w->queue_off) flush(w);
  if ((events & UV_READABLE) && !w->failed && !w->closed) read_once(w);
}

static Wire *wire_at(Instance *I, napi_env env, napi_value v) {
  int32_t slot;
  if (napi_get_value_int32(env, v, &slot) != napi_ok || slot < 0 || (size_t)slot >= I->next_slot || I->slots[slot] == NULL) {
    napi_throw_range_error(env, "PGW_NATIVE_WIRE", "native wire: no such slot");
    return NULL;
  }
  return I->slots[slot];
}

/*
 * The wire named by a call's only argument (its slot), or NULL with a JavaScript exception pending; `inst`, when
 * not NULL, gets the module instance.
 */
static Wire *wire_arg(napi_env env, napi_callback_info info, Instance **inst) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok || argc < 1) {
    napi_throw_type_error(env, "PGW_NATIVE_WIRE", "native wire: a slot is required");
    return NULL;
  }
  Instance *I = data;
  if (inst != NULL) *inst = I;
  flush_outbox(I); /* what JavaScript wrote before goes first, and no entry of a closed wire reaches its slot's next wire */
  return wire_at(I, env, argv[0]);
}

/* init(arena: Buffer, events: Int32Array, onEvents: (count) => void, outbox: Int32Array, pending: Int32Array) */
static napi_value Init(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  void *data;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, &data));
  Instance *I = data;
  if (argc < 5) {
    napi_throw_type_error(env, "PGW_NATIVE_WIRE", "native wire: init(arena, events, onEvents, outbox, pending)");
    return NULL;
  }
  if (I->ready) {
    napi_throw_error(env, "PGW_NATIVE_WIRE", "native wire: init() may be called once per thread");
    return NULL;
  }
  void *arena;
  size_t length;
  CHECK(napi_get_buffer_info(env, argv[0], &arena, &length));
  if (length < 2 * READ_SIZE) {
    napi_throw_range_error(env, "PGW_NATIVE_WIRE", "native wire: the arena must hold at least two reads");
    return NULL;
  }
  I->arena = arena;
  I->arena_cap = length;
  napi_typedarray_type type;
  size_t count;
  void *events;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &count, &events, NULL, NULL));
  if (type != napi_int32_array || count < EVENT_INTS) {
    napi_throw_type_error(env, "PGW_NATIVE_WIRE", "native wire: events must be an Int32Array of at least 4 entries");
    return NULL;
  }
  I->events = events;
  I->events_cap = count / EVENT_INTS;
  void *outbox;
  CHECK(napi_get_typedarray_info(env, argv[3], &type, &count, &outbox, NULL, NULL));
  if (type != napi_int32_array || count < 1 + OUTBOX_INTS) {
    napi_throw_type_error(env, "PGW_NATIVE_WIRE", "native wire: outbox must be an Int32Array of at least 4 entries");
    return NULL;
  }
  I->outbox = outbox;
  I->outbox_cap = (count - 1) / OUTBOX_INTS;
  I->outbox[0] = 0;
  void *pending;
  CHECK(napi_get_typedarray_info(env, argv[4], &type, &count, &pending, NULL, NULL));
  if (type != napi_int32_array || count < 1) {
    napi_throw_type_error(env, "PGW_NATIVE_WIRE", "native wire: pending must be an Int32Array");
    return NULL;
  }
  I->pending = pending;
  I->pending_cap = count;
  CHECK(napi_create_reference(env, argv[3], 1, &I->outbox_ref));
  CHECK(napi_create_reference(env, argv[4], 1, &I->pending_ref));
  CHECK(napi_create_reference(env, argv[0], 1, &I->arena_ref));
  CHECK(napi_create_reference(env, argv[1], 1, &I->events_ref));
  CHECK(napi_create_reference(env, argv[2], 1, &I->callback_ref));
  napi_value name;
  CHECK(napi_create_string_utf8(env, "pgwarden.wire", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &I->async_context));
  CHECK(napi_get_uv_event_loop(env, &I->loop));
  uv_check_init(I->loop, &I->check);
  I->check.data = I;
  I->handles_open++;
  uv_check_start(&I->check, on_check);
  uv_unref((uv_handle_t *)&I->check);
  I->env = env;
  I->ready = 1;
  return undefined(env);
}

/* adopt(fd) → slot: watches a duplicate of a connected, non-blocking socket (the caller then closes its own). */
static napi_value Adopt(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, &data));
  Instance *I = data;
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  if (!I->ready) {
    napi_throw_error(env, "PGW_NATIVE_WIRE", "native wire: init() first");
    return NULL;
  }
  flush_outbox(I); /* no entry of a closed wire may reach the wire that gets its slot */
  if (I->free_count == 0 && I->next_slot >= I->pending_cap) return number(env, -ENFILE);
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return number(env, -errno);
  int flags = fcntl(own, F_GETFL);
  if (flags < 0 || fcntl(own, F_SETFL, flags | O_NONBLOCK) < 0) {
    int e = errno;
    close(own);
    return number(env, -e);
  }
  int slot;
  if (I->free_count > 0) {
    slot = I->free_slots[--I->free_count];
  } else {
    if (I->next_slot == I->slot_cap) {
      size_t cap = I->slot_cap == 0 ? 1024 : I->slot_cap * 2;
      Wire **slots = realloc(I->slots, cap * sizeof *slots);
      int *free_slots = realloc(I->free_slots, cap * sizeof *free_slots);
      if (slots != NULL) I->slots = slots;
      if (free_slots != NULL) I->free_slots = free_slots;
      if (slots == NULL || free_slots == NULL) {
        close(own);
        return number(env, -ENOMEM);
      }
      I->slot_cap = cap;
    }
    slot = (int)I->next_slot++;
  }
  Wire *w = calloc(1, sizeof *w);
  if (w == NULL) {
    close(own);
    I->free_slots[I->free_count++] = slot;
    return number(env, -ENOMEM);
  }
  w->fd = own;
  w->slot = slot;
  w->inst = I;
  int rc = uv_poll_init_socket(I->loop, &w->poll, own);
  if (rc != 0) {
    close(own);
    free(w);
    I->free_slots[I->free_count++] = slot;
    return number(env, rc);
  }
  w->poll.data = w;
  I->handles_open++;
  I->slots[slot] = w;
  I->pending[slot] = 0;
  set_watch(w);
  return number(env, slot);
}

static int append(Wire *w, const char *bytes, size_t length) {
  size_t live = w->queue_len - w->queue_off;
  if (w->queue_off > 0 && w->queue_off >= live) {
    memmove(w->queue, w->queue + w->queue_off, live);
    w->queue_off = 0;
    w->queue_len = live;
  }
  if (w->queue_len + length > w->queue_cap) {
    size_t cap = w->queue_cap == 0 ? 16 * 1024 : w->queue_cap;
    while (cap < w->queue_len + length) cap *= 2;
    char *q = realloc(w->queue, cap);
    if (q == NULL) return -ENOMEM;
    w->queue = q;
    w->queue_cap = cap;
  }
  memcpy(w->queue + w->queue_len, bytes, length);
  w->queue_len += length;
  set_pending(w);
  return 0;
}

/* Sends bytes after what is queued: straight to the kernel when nothing is, the rest into the queue. 0 or -errno. */
static int send_or_queue(Wire *w, const char *p, size_t left) {
  if (w->queue_len == w->queue_off) {
    while (left > 0) {
      ssize_t n = send(w->fd, p, left, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        int e = errno;
        mark_failed(w);
        return -e;
      }
      p += n;
      left -= (size_t)n;
    }
  }
  if (left > 0) {
    int rc = append(w, p, left);
    if (rc < 0) return rc;
    set_watch(w);
  }
  return 0;
}

/* A send of the outbox failed, perhaps during a delivery (when no event may be recorded): reported once it is over. */
static void fail_late(Wire *w, int error) {
  Instance *I = w->inst;
  if (!w->failed) mark_failed(w);
  if (w->late_error != 0) return;
  if (I->late_count == I->late_cap) {
    size_t cap = I->late_cap == 0 ? 64 : I->late_cap * 2;
    Wire **late = realloc(I->late, cap * sizeof *late);
    if (late == NULL) abort(); /* a wire that failed unseen would hang its client: better die loudly */
    I->late = late;
    I->late_cap = cap;
  }
  w->late_error = error;
  I->late[I->late_count++] = w;
}

/*
 * Called between deliveries only. A closed wire is not freed before the loop's closing phase: `closed` can be read.
 * Popped one by one: push_event may deliver (and so come back here) when the event list fills up.
 */
static void report_late_errors(Instance *I) {
  while (I->late_count > 0) {
    Wire *w = I->late[--I->late_count];
    int error = w->late_error;
    w->late_error = 0;
    if (!w->closed) push_event(I, EV_ERROR, w->slot, 0, -error);
  }
}

/* Sends the outbox's arena ranges in order; consecutive ranges of one wire that touch go out as one send. */
static void flush_outbox(Instance *I) {
  int32_t count = I->outbox[0];
  if (count <= 0) return;
  I->outbox[0] = 0;
  if ((size_t)count > I->outbox_cap) count = (int32_t)I->outbox_cap;
  const int32_t *e = I->outbox + 1;
  for (int32_t i = 0; i < count; i++) {
    int32_t slot = e[i * OUTBOX_INTS], offset = e[i * OUTBOX_INTS + 1], length = e[i * OUTBOX_INTS + 2];
    while (i + 1 < count && e[(i + 1) * OUTBOX_INTS] == slot && e[(i + 1) * OUTBOX_INTS + 1] == offset + length) {
      length += e[(i + 1) * OUTBOX_INTS + 2];
      i++;
    }
    if (slot < 0 || (size_t)slot >= I->next_slot || offset < 0 || length <= 0 || (size_t)offset + (size_t)length > I->arena_cap) continue;
    Wire *w = I->slots[slot];
    if (w == NULL || w->failed || w->closed || w->ending) continue;
    int rc = send_or_queue(w, I->arena + offset, (size_t)length);
    if (rc < 0) fail_late(w, -rc);
  }
}

/* write(slot, buffer, start, end) → bytes still queued (0: all sent), or -errno (the wire failed). */
static napi_value Write(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  void *inst;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, &inst));
  Instance *I = inst;
  flush_outbox(I); /* what JavaScript wrote before goes first */
  Wire *w = wire_at(I, env, argv[0]);
  if (w == NULL) return NULL;
  void *data;
  size_t length;
  int32_t start, end;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &length));
  CHECK(napi_get_value_int32(env, argv[2], &start));
  CHECK(napi_get_value_int32(env, argv[3], &end));
  if (start < 0 || end < start || (size_t)end > length) {
    napi_throw_range_error(env, "PGW_NATIVE_WIRE", "native wire: write range outside the buffer");
    return NULL;
  }
  if (w->failed) return number(env, -EPIPE);
  int rc = send_or_queue(w, (const char *)data + start, (size_t)(end - start));
  if (rc < 0) return number(env, rc);
  return number(env, (double)(w->queue_len - w->queue_off));
}

static napi_value SetPaused(napi_env env, napi_callback_info info, int paused) {
  Wire *w = wire_arg(env, info, NULL);
  if (w == NULL) return NULL;
  w->paused = paused;
  set_watch(w);
  return undefined(env);
}

static napi_value Pause(napi_env env, napi_callback_info info) { return SetPaused(env, info, 1); }
static napi_value Resume(napi_env env, napi_callback_info info) { return SetPaused(env, info, 0); }

/* end(slot): no more writes; the write side is shut once the queue is flushed. Reading goes on to the peer's EOF. */
static napi_value End(napi_env env, napi_callback_info info) {
  Wire *w = wire_arg(env, info, NULL);
  if (w == NULL) return NULL;
  w->ending = 1;
  if (w->queue_len == w->queue_off && !w->failed) shutdown(w->fd, SHUT_WR);
  return undefined(env);
}

/*
 * duplicate(fd) → a new descriptor for the same socket (close-on-exec), or -errno: how an accepted connection
 * moves to another thread (a worker), which opens it as its own net.Socket while the accepting one is destroyed.
 */
static napi_value Duplicate(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "PGW_NATIVE_WIRE", "native wire: duplicate(fd) needs a descriptor");
    return NULL;
  }
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return number(env, own < 0 ? -errno : own);
}

static void finish_cleanup(Instance *I) {
  if (I->cleanup == NULL || I->handles_open > 0) return;
  napi_async_cleanup_hook_handle hook = I->cleanup;
  free(I->slots);
  free(I->free_slots);
  free(I->late);
  free(I);
  napi_remove_async_cleanup_hook(hook);
}

static void on_closed(uv_handle_t *handle) {
  Wire *w = (Wire *)handle->data;
  Instance *I = w->inst;
  close(w->fd);
  free(w->queue);
  free(w);
  I->handles_open--;
  finish_cleanup(I);
}

static void close_wire(Instance *I, Wire *w) {
  int slot = w->slot;
  w->closed = 1;
  if (I->pending != NULL) I->pending[slot] = 0;
  I->slots[slot] = NULL;
  I->free_slots[I->free_count++] = slot;
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

/* close(slot): stops watching, drops unsent bytes and events not yet handed over, closes the socket. */
static napi_value Close(napi_env env, napi_callback_info info) {
  Instance *I;
  /* First (wire_arg flushes the outbox): bytes written before destroy() are sent as by a direct send. */
  Wire *w = wire_arg(env, info, &I);
  if (w == NULL) return NULL;
  /* The events array is read by JavaScript while it is being delivered: later events of this slot become no-ops. */
  for (size_t i = 0; i < I->event_count; i++) {
    int32_t *e = I->events + i * EVENT_INTS;
    if (e[1] == w->slot) e[0] = 0;
  }
  close_wire(I, w);
  return undefined(env);
}

static void on_check_closed(uv_handle_t *handle) {
  Instance *I = handle->data;
  I->handles_open--;
  finish_cleanup(I);
}

/*
 * The environment (a worker thread, or the process at exit) is going away: its loop may only be closed once every
 * handle of this instance is, so the sockets still open are closed here and the hook completes in the last close
 * callback. JavaScript is not called any more.
 */
static void cleanup(napi_async_cleanup_hook_handle hook, void *data) {
  Instance *I = data;
  I->cleanup = hook;
  /* The typed arrays may be gone with the environment: not touched from here on. */
  I->event_count = 0;
  I->pending = NULL;
  for (size_t slot = 0; slot < I->next_slot; slot++) {
    if (I->slots[slot] != NULL) close_wire(I, I->slots[slot]);
  }
  if (I->ready) {
    uv_check_stop(&I->check);
    uv_close((uv_handle_t *)&I->check, on_check_closed);
  }
  finish_cleanup(I);
}

NAPI_MODULE_INIT() {
  Instance *I = calloc(1, sizeof *I);
  if (I == NULL) {
    napi_throw_error(env, "PGW_NATIVE_WIRE", "native wire: out of memory");
    return NULL;
  }
  if (napi_add_async_cleanup_hook(env, cleanup, I, NULL) != napi_ok) {
    free(I);
    napi_throw_error(env, "PGW_NATIVE_WIRE", "native wire: napi_add_async_cleanup_hook failed");
    return NULL;
  }
  napi_property_descriptor props[] = {
      {"init", NULL, Init, NULL, NULL, NULL, napi_default, I},
      {"adopt", NULL, Adopt, NULL, NULL, NULL, napi_default, I},
      {"write", NULL, Write, NULL, NULL, NULL, napi_default, I},
      {"pause", NULL, Pause, NULL, NULL, NULL, napi_default, I},
      {"resume", NULL, Resume, NULL, NULL, NULL, napi_default, I},
      {"end", NULL, End, NULL, NULL, NULL, napi_default, I},
      {"close", NULL, Close, NULL, NULL, NULL, napi_default, I},
      {"duplicate", NULL, Duplicate, NULL, NULL, NULL, napi_default, I},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
