/*
 * virtiokit native addon — shared declarations.
 *
 * Everything is raw C Node-API (NAPI_VERSION 8). Errors are thrown as VirtioError objects built by
 * a factory the TypeScript loader registers at init (see addon.c `init`); without it, a plain Error
 * with `code` and `errno` properties is thrown.
 */
#ifndef VIRTIOKIT_COMMON_H
#define VIRTIOKIT_COMMON_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

struct vk_poll;

/* Per-environment state (main thread and each worker_thread have their own). */
typedef struct vk_inst {
  napi_env env;
  napi_ref err_factory;  /* (code, message, errno) => VirtioError, or NULL */
  napi_ref sab_view;     /* (value) => Uint8Array over a SharedArrayBuffer | undefined, or NULL */
  napi_ref poll_ctor;    /* constructor of PollHandle objects */
  struct vk_poll* polls; /* active watches (doubly linked) */
  int closing;           /* handles closed by the async cleanup hook, not yet finished */
  int tearing_down;
  int env_gone; /* instance-data finalizer ran; the last teardown close frees the struct */
  napi_async_cleanup_hook_handle cleanup;
} vk_inst;

vk_inst* vk_get_inst(napi_env env);

/* Throw a VirtioError with `code`; `err` > 0 adds errno and its strerror text. Returns NULL. */
napi_value vk_throw(napi_env env, const char* code, int err, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* True when x is an integer in [0, 2^53). NaN and infinities fail. */
static inline int vk_is_uint(double x) {
  return x >= 0 && x <= 9007199254740991.0 && x == (double)(int64_t)x;
}

/* Read a non-negative integer (< 2^53) argument; throws INVALID_ARGUMENT otherwise. 0 = ok. */
int vk_arg_uint(napi_env env, napi_value v, const char* fn, const char* name, uint64_t* out);
/* Read an fd argument (integer 0..2^31-1); throws INVALID_ARGUMENT otherwise. 0 = ok. */
int vk_arg_fd(napi_env env, napi_value v, const char* fn, int* out);
/* Read a string argument into buf (NUL terminated, at most cap-1 bytes). 0 = ok. */
int vk_arg_string(napi_env env, napi_value v, const char* fn, const char* name, char* buf, size_t cap, size_t* len);
/* True when v is undefined (or missing). */
int vk_is_undefined(napi_env env, napi_value v);

/* Bytes of an ArrayBuffer, SharedArrayBuffer (through the registered view helper) or typed array.
 * Fast path is inline; returns 0 on success, -1 after throwing INVALID_ARGUMENT. */
int vk_buf_slow(napi_env env, napi_value v, const char* fn, const char* name, uint8_t** data, size_t* len);
static inline int vk_buf(napi_env env, napi_value v, const char* fn, const char* name, uint8_t** data, size_t* len) {
  void* d;
  if (napi_get_arraybuffer_info(env, v, &d, len) == napi_ok) {
    *data = (uint8_t*)d;
    return 0;
  }
  return vk_buf_slow(env, v, fn, name, data, len);
}
/* True when v is a detached ArrayBuffer (an unmapped mapping). */
int vk_is_detached(napi_env env, napi_value v);

/* Bytes of a typed array / DataView argument (e.g. a Uint8Array message buffer). 0 = ok. */
int vk_arg_bytes(napi_env env, napi_value v, const char* fn, const char* name, uint8_t** data, size_t* len);

/* Module parts: each adds its properties to the exports object. */
napi_status vk_init_copy(napi_env env, napi_value exports);
napi_status vk_init_mem(napi_env env, napi_value exports);
napi_status vk_init_fds(napi_env env, napi_value exports);
napi_status vk_init_sock(napi_env env, napi_value exports);
napi_status vk_init_poll(napi_env env, napi_value exports, vk_inst* inst);

/* poll.c: stop watches on `fd` in this env before it is closed (close() calls this). */
void vk_poll_forget_fd(napi_env env, int fd);

#define VK_CHECK(env, call)                                                        \
  do {                                                                             \
    if ((call) != napi_ok) return vk_throw((env), "INTERNAL", 0, "%s failed", #call); \
  } while (0)

#endif
