/*
 * virtiokit native addon — eventfd and plain fd helpers (raw Node-API).
 * eventfdRead / eventfdWrite are hot (kick and call notifications) and allocate nothing.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* eventfdCreate(initval = 0) */
static napi_value js_eventfd_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint64_t init = 0;
  if (!vk_is_undefined(env, argv[0]) && vk_arg_uint(env, argv[0], "eventfdCreate", "initval", &init) != 0) return NULL;
  if (init > 0xffffffffULL) return vk_throw(env, "INVALID_ARGUMENT", 0, "eventfdCreate: initval must fit in 32 bits (got %llu)", (unsigned long long)init);
  int fd = eventfd((unsigned int)init, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return vk_throw(env, "NATIVE_ERROR", errno, "eventfdCreate: eventfd failed");
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* eventfdRead(fd) → counter (0 when it was 0) */
static napi_value js_eventfd_read(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (vk_arg_fd(env, argv[0], "eventfdRead", &fd) != 0) return NULL;
  uint64_t v = 0;
  ssize_t n;
  do n = read(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) v = 0;
    else return vk_throw(env, "NATIVE_ERROR", errno, "eventfdRead: reading fd %d failed", fd);
  } else if (n != (ssize_t)sizeof v) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "eventfdRead: fd %d is not an eventfd (read %zd bytes)", fd, n);
  }
  napi_value out;
  napi_create_double(env, (double)v, &out);
  return out;
}

/* eventfdWrite(fd, value = 1) */
static napi_value js_eventfd_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (vk_arg_fd(env, argv[0], "eventfdWrite", &fd) != 0) return NULL;
  uint64_t v = 1;
  if (argc > 1 && !vk_is_undefined(env, argv[1]) && vk_arg_uint(env, argv[1], "eventfdWrite", "value", &v) != 0) return NULL;
  ssize_t n;
  do n = write(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    if (e == EAGAIN) return vk_throw(env, "NATIVE_ERROR", e, "eventfdWrite: the counter of fd %d would overflow; read it first", fd);
    return vk_throw(env, "NATIVE_ERROR", e, "eventfdWrite: writing fd %d failed", fd);
  }
  if (n != (ssize_t)sizeof v) return vk_throw(env, "INVALID_ARGUMENT", 0, "eventfdWrite: fd %d is not an eventfd", fd);
  return NULL;
}

/* close(fd) */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (vk_arg_fd(env, argv[0], "close", &fd) != 0) return NULL;
  if (fcntl(fd, F_GETFD) < 0) return vk_throw(env, "NATIVE_ERROR", errno, "close: fd %d is not open", fd);
  /* A libuv watch on a closed fd would misbehave if the number is reused: stop ours first. */
  vk_poll_forget_fd(env, fd);
  if (close(fd) != 0 && errno != EINTR) return vk_throw(env, "NATIVE_ERROR", errno, "close: closing fd %d failed", fd);
  return NULL;
}

/* dup(fd) with CLOEXEC (never returns 0..2) */
static napi_value js_dup(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (vk_arg_fd(env, argv[0], "dup", &fd) != 0) return NULL;
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (nfd < 0) return vk_throw(env, "NATIVE_ERROR", errno, "dup: duplicating fd %d failed", fd);
  napi_value out;
  napi_create_int32(env, nfd, &out);
  return out;
}

/* fdSize(fd) */
static napi_value js_fd_size(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (vk_arg_fd(env, argv[0], "fdSize", &fd) != 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) return vk_throw(env, "NATIVE_ERROR", errno, "fdSize: fstat of fd %d failed", fd);
  napi_value out;
  napi_create_double(env, (double)st.st_size, &out);
  return out;
}

napi_status vk_init_fds(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"eventfdCreate", NULL, js_eventfd_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdRead", NULL, js_eventfd_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdWrite", NULL, js_eventfd_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dup", NULL, js_dup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdSize", NULL, js_fd_size, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
