/*
 * virtiokit native addon — fd readiness through libuv (uv_poll_t on the env's own loop).
 *
 * poll(fd, events, cb) returns a PollHandle object (stop / ref / unref). While a watch is active
 * the handle object and the callback are strongly referenced, so a watch keeps running even if the
 * caller drops the handle. stop() stops the watch at once, closes the uv handle (it then no longer
 * keeps the loop alive) and releases the callback. The C struct is freed only when both the uv
 * close callback has run and the JS object has been finalized.
 *
 * At env teardown (process exit, worker exit) an async cleanup hook closes every active handle and
 * tells Node when the last close callback ran, so a worker's loop closes cleanly.
 */
#include "common.h"

#include <stdlib.h>
#include <uv.h>

typedef struct vk_poll {
  uv_poll_t handle;
  vk_inst* inst;
  napi_ref cb;   /* strong while active */
  napi_ref self; /* strong while active */
  napi_async_context actx;
  int fd;
  int active;
  int closed;    /* uv close callback ran (or the handle never needed closing) */
  int finalized; /* JS object finalized */
  int teardown;  /* closed by the cleanup hook */
  struct vk_poll *prev, *next;
} vk_poll;

static void maybe_free(vk_poll* p) {
  if (p->closed && p->finalized) free(p);
}

static void list_remove(vk_poll* p) {
  vk_inst* inst = p->inst;
  if (p->prev) p->prev->next = p->next;
  else if (inst->polls == p) inst->polls = p->next;
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static void on_close(uv_handle_t* h) {
  vk_poll* p = (vk_poll*)h->data;
  p->closed = 1;
  if (p->teardown) {
    /* Node may already have deleted the napi_env (and finalized the JS object): only the
     * instance struct, kept alive for exactly this, is touched. */
    vk_inst* inst = p->inst;
    maybe_free(p);
    if (--inst->closing == 0) {
      napi_async_cleanup_hook_handle hh = inst->cleanup;
      inst->cleanup = NULL;
      if (hh != NULL) napi_remove_async_cleanup_hook(hh);
      if (inst->env_gone) free(inst);
    }
    return;
  }
  maybe_free(p);
}

/* Stop an active watch and release its references. Safe to call from the watch's own callback. */
static void stop_watch(napi_env env, vk_poll* p) {
  if (!p->active) return;
  p->active = 0;
  uv_poll_stop(&p->handle);
  list_remove(p);
  if (p->cb) napi_delete_reference(env, p->cb);
  if (p->self) napi_delete_reference(env, p->self);
  if (p->actx) napi_async_destroy(env, p->actx);
  p->cb = p->self = NULL;
  p->actx = NULL;
  uv_close((uv_handle_t*)&p->handle, on_close);
}

static void on_poll(uv_poll_t* h, int status, int events) {
  vk_poll* p = (vk_poll*)h->data;
  if (!p->active) return;
  napi_env env = p->inst->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, self, argv[2], result;
  if (napi_get_reference_value(env, p->cb, &cb) == napi_ok && cb != NULL && napi_get_reference_value(env, p->self, &self) == napi_ok) {
    napi_create_int32(env, status < 0 ? 0 : events, &argv[0]);
    napi_create_int32(env, status < 0 ? -status : 0, &argv[1]);
    if (napi_make_callback(env, p->actx, self, cb, 2, argv, &result) != napi_ok) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value err;
        napi_get_and_clear_last_exception(env, &err);
        napi_fatal_exception(env, err); /* → process 'uncaughtException', like any callback */
      }
    }
  }
  napi_close_handle_scope(env, scope);
}

static void finalize_handle(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  vk_poll* p = (vk_poll*)data;
  p->finalized = 1;
  maybe_free(p);
}

static vk_poll* unwrap_this(napi_env env, napi_callback_info info, const char* fn) {
  napi_value self;
  void* data = NULL;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  if (napi_unwrap(env, self, &data) != napi_ok || data == NULL) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "PollHandle.%s: called on an object that is not a PollHandle", fn);
    return NULL;
  }
  return (vk_poll*)data;
}

static napi_value js_stop(napi_env env, napi_callback_info info) {
  vk_poll* p = unwrap_this(env, info, "stop");
  if (p != NULL) stop_watch(env, p);
  return NULL;
}

static napi_value js_ref(napi_env env, napi_callback_info info) {
  vk_poll* p = unwrap_this(env, info, "ref");
  if (p != NULL && p->active) uv_ref((uv_handle_t*)&p->handle);
  return NULL;
}

static napi_value js_unref(napi_env env, napi_callback_info info) {
  vk_poll* p = unwrap_this(env, info, "unref");
  if (p != NULL && p->active) uv_unref((uv_handle_t*)&p->handle);
  return NULL;
}

static napi_value js_active(napi_env env, napi_callback_info info) {
  vk_poll* p = unwrap_this(env, info, "active");
  napi_value out;
  napi_get_boolean(env, p != NULL && p->active, &out);
  return p != NULL ? out : NULL;
}

static napi_value js_fd(napi_env env, napi_callback_info info) {
  vk_poll* p = unwrap_this(env, info, "fd");
  if (p == NULL) return NULL;
  napi_value out;
  napi_create_int32(env, p->fd, &out);
  return out;
}

static napi_value js_ctor(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  return self;
}

/* poll(fd, events, cb) */
static napi_value js_poll(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint64_t events;
  if (vk_arg_fd(env, argv[0], "poll", &fd) != 0) return NULL;
  if (vk_arg_uint(env, argv[1], "poll", "events", &events) != 0) return NULL;
  if (events == 0 || (events & ~(uint64_t)(UV_READABLE | UV_WRITABLE | UV_DISCONNECT)) != 0) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "poll: events must be a non-zero combination of POLL_READABLE (1) and POLL_WRITABLE (2) (got %llu)",
                    (unsigned long long)events);
  }
  napi_valuetype t;
  if (argv[2] == NULL || napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "poll: cb must be a function (events, errno) => void");
  }
  vk_inst* inst = vk_get_inst(env);
  if (inst == NULL || inst->tearing_down) return vk_throw(env, "CLOSED", 0, "poll: this Node.js environment is shutting down");
  for (vk_poll* q = inst->polls; q != NULL; q = q->next) {
    if (q->fd == fd) return vk_throw(env, "INVALID_ARGUMENT", 0, "poll: fd %d is already being watched; stop() that watch first", fd);
  }
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return vk_throw(env, "INTERNAL", 0, "poll: no event loop");

  vk_poll* p = (vk_poll*)calloc(1, sizeof *p);
  if (p == NULL) return vk_throw(env, "NATIVE_ERROR", 12, "poll: out of memory");
  p->inst = inst;
  p->fd = fd;
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r != 0) {
    free(p);
    return vk_throw(env, "NATIVE_ERROR", -r, "poll: cannot watch fd %d (%s)", fd, uv_err_name(r));
  }
  p->handle.data = p;
  r = uv_poll_start(&p->handle, (int)events, on_poll);
  if (r != 0) {
    p->finalized = 1; /* no JS object will exist */
    uv_close((uv_handle_t*)&p->handle, on_close);
    return vk_throw(env, "NATIVE_ERROR", -r, "poll: cannot watch fd %d (%s)", fd, uv_err_name(r));
  }

  napi_value ctor, obj, name;
  if (napi_get_reference_value(env, inst->poll_ctor, &ctor) != napi_ok || napi_new_instance(env, ctor, 0, NULL, &obj) != napi_ok ||
      napi_wrap(env, obj, p, finalize_handle, NULL, NULL) != napi_ok) {
    uv_poll_stop(&p->handle);
    p->finalized = 1;
    uv_close((uv_handle_t*)&p->handle, on_close);
    return vk_throw(env, "INTERNAL", 0, "poll: cannot create the handle object");
  }
  napi_create_string_utf8(env, "virtiokit:poll", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[2], 1, &p->cb);
  napi_create_reference(env, obj, 1, &p->self);
  napi_async_init(env, obj, name, &p->actx);
  p->active = 1;
  p->next = inst->polls;
  if (inst->polls) inst->polls->prev = p;
  inst->polls = p;
  return obj;
}

void vk_poll_forget_fd(napi_env env, int fd) {
  vk_inst* inst = vk_get_inst(env);
  if (inst == NULL) return;
  for (vk_poll* q = inst->polls; q != NULL; q = q->next) {
    if (q->fd == fd) {
      stop_watch(env, q);
      return;
    }
  }
}

static void async_cleanup(napi_async_cleanup_hook_handle handle, void* arg) {
  vk_inst* inst = (vk_inst*)arg;
  inst->tearing_down = 1;
  inst->cleanup = handle;
  vk_poll* p = inst->polls;
  inst->polls = NULL;
  while (p != NULL) {
    vk_poll* next = p->next;
    p->active = 0;
    p->teardown = 1;
    /* References and async contexts die with the env; only the uv handle needs closing. */
    uv_poll_stop(&p->handle);
    inst->closing++;
    uv_close((uv_handle_t*)&p->handle, on_close);
    p = next;
  }
  if (inst->closing == 0) {
    inst->cleanup = NULL;
    napi_remove_async_cleanup_hook(handle);
  }
}

napi_status vk_init_poll(napi_env env, napi_value exports, vk_inst* inst) {
  napi_property_descriptor methods[] = {
      {"stop", NULL, js_stop, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, js_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, js_unref, NULL, NULL, NULL, napi_default_method, NULL},
      {"active", NULL, NULL, js_active, NULL, NULL, napi_enumerable | napi_configurable, NULL},
      {"fd", NULL, NULL, js_fd, NULL, NULL, napi_enumerable | napi_configurable, NULL},
  };
  napi_value ctor;
  napi_status s = napi_define_class(env, "PollHandle", NAPI_AUTO_LENGTH, js_ctor, NULL, sizeof methods / sizeof methods[0], methods, &ctor);
  if (s != napi_ok) return s;
  s = napi_create_reference(env, ctor, 1, &inst->poll_ctor);
  if (s != napi_ok) return s;
  s = napi_add_async_cleanup_hook(env, async_cleanup, inst, NULL);
  if (s != napi_ok) return s;
  napi_property_descriptor props[] = {
      {"poll", NULL, js_poll, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, 1, props);
}
