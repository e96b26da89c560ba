/*
 * virtiokit native addon — UNIX stream sockets with SCM_RIGHTS fd passing (raw Node-API).
 * All sockets are non-blocking and close-on-exec; sends use MSG_NOSIGNAL so a closed peer gives
 * EPIPE instead of killing the process with SIGPIPE.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Linux SCM_MAX_FD */
#define MAX_FDS 253

static napi_value make_int(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

static int sock_path(napi_env env, napi_value v, const char* fn, struct sockaddr_un* sa, socklen_t* salen) {
  char path[sizeof sa->sun_path];
  size_t n = 0;
  if (vk_arg_string(env, v, fn, "path", path, sizeof path, &n) != 0) return -1;
  if (n == 0) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "%s: path must not be empty", fn);
    return -1;
  }
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path, path, n + 1);
  *salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return 0;
}

/* socketpair() → [fd0, fd1] */
static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return vk_throw(env, "NATIVE_ERROR", errno, "socketpair failed");
  }
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, make_int(env, sv[0]));
  napi_set_element(env, arr, 1, make_int(env, sv[1]));
  return arr;
}

/* listenUnix(path) */
static napi_value js_listen_unix(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct sockaddr_un sa;
  socklen_t salen;
  if (sock_path(env, argv[0], "listenUnix", &sa, &salen) != 0) return NULL;
  struct stat st;
  if (lstat(sa.sun_path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return vk_throw(env, "INVALID_ARGUMENT", 0, "listenUnix: %s exists and is not a socket; refusing to replace it", sa.sun_path);
    }
    if (unlink(sa.sun_path) != 0 && errno != ENOENT) {
      return vk_throw(env, "NATIVE_ERROR", errno, "listenUnix: cannot remove the stale socket %s", sa.sun_path);
    }
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return vk_throw(env, "NATIVE_ERROR", errno, "listenUnix: socket failed");
  if (bind(fd, (struct sockaddr*)&sa, salen) != 0) {
    int e = errno;
    close(fd);
    return vk_throw(env, "NATIVE_ERROR", e, "listenUnix: bind to %s failed", sa.sun_path);
  }
  if (listen(fd, 16) != 0) {
    int e = errno;
    close(fd);
    return vk_throw(env, "NATIVE_ERROR", e, "listenUnix: listen on %s failed", sa.sun_path);
  }
  return make_int(env, fd);
}

/* accept(fd) → new fd, or -1 when nothing is pending */
static napi_value js_accept(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (vk_arg_fd(env, argv[0], "accept", &fd) != 0) return NULL;
  int c;
  do c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (c < 0 && errno == EINTR);
  if (c < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return make_int(env, -1);
    return vk_throw(env, "NATIVE_ERROR", errno, "accept on fd %d failed", fd);
  }
  return make_int(env, c);
}

/* connectUnix(path) */
static napi_value js_connect_unix(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct sockaddr_un sa;
  socklen_t salen;
  if (sock_path(env, argv[0], "connectUnix", &sa, &salen) != 0) return NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return vk_throw(env, "NATIVE_ERROR", errno, "connectUnix: socket failed");
  int r;
  do r = connect(fd, (struct sockaddr*)&sa, salen);
  while (r != 0 && errno == EINTR);
  if (r != 0) {
    int e = errno;
    close(fd);
    return vk_throw(env, "NATIVE_ERROR", e, "connectUnix: cannot connect to %s (is the server listening?)", sa.sun_path);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    int e = errno;
    close(fd);
    return vk_throw(env, "NATIVE_ERROR", e, "connectUnix: cannot make the socket non-blocking");
  }
  return make_int(env, fd);
}

/* sendmsg(fd, data, fds?) → bytes, or -1 on EAGAIN */
static napi_value js_sendmsg(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint8_t* data;
  size_t len;
  if (vk_arg_fd(env, argv[0], "sendmsg", &fd) != 0) return NULL;
  if (vk_arg_bytes(env, argv[1], "sendmsg", "data", &data, &len) != 0) return NULL;
  int fds[MAX_FDS];
  uint32_t nfds = 0;
  if (argc > 2 && !vk_is_undefined(env, argv[2])) {
    bool isarr = false;
    if (napi_is_array(env, argv[2], &isarr) != napi_ok || !isarr || napi_get_array_length(env, argv[2], &nfds) != napi_ok) {
      return vk_throw(env, "INVALID_ARGUMENT", 0, "sendmsg: fds must be an array of file descriptors");
    }
    if (nfds > MAX_FDS) return vk_throw(env, "INVALID_ARGUMENT", 0, "sendmsg: at most %d fds per message (got %u)", MAX_FDS, nfds);
    for (uint32_t i = 0; i < nfds; i++) {
      napi_value el;
      if (napi_get_element(env, argv[2], i, &el) != napi_ok) return NULL;
      if (vk_arg_fd(env, el, "sendmsg", &fds[i]) != 0) return NULL;
    }
    if (nfds > 0 && len == 0) {
      return vk_throw(env, "INVALID_ARGUMENT", 0, "sendmsg: passing fds needs at least one byte of data on a stream socket");
    }
  }
  struct iovec iov = {data, len};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } ctl;
  if (nfds > 0) {
    memset(ctl.buf, 0, sizeof ctl.buf);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) return make_int(env, -1);
    if (e == EPIPE || e == ECONNRESET) return vk_throw(env, "NATIVE_ERROR", e, "sendmsg: the peer of fd %d closed the connection", fd);
    return vk_throw(env, "NATIVE_ERROR", e, "sendmsg on fd %d failed", fd);
  }
  napi_value out;
  napi_create_double(env, (double)n, &out);
  return out;
}

/* recvmsg(fd, buf, maxFds = 16) → { bytes, fds } or null on EAGAIN */
static napi_value js_recvmsg(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint8_t* data;
  size_t len;
  uint64_t maxFds = 16;
  if (vk_arg_fd(env, argv[0], "recvmsg", &fd) != 0) return NULL;
  if (vk_arg_bytes(env, argv[1], "recvmsg", "buf", &data, &len) != 0) return NULL;
  if (len == 0) return vk_throw(env, "INVALID_ARGUMENT", 0, "recvmsg: buf must hold at least one byte");
  if (argc > 2 && !vk_is_undefined(env, argv[2]) && vk_arg_uint(env, argv[2], "recvmsg", "maxFds", &maxFds) != 0) return NULL;
  if (maxFds > MAX_FDS) return vk_throw(env, "INVALID_ARGUMENT", 0, "recvmsg: maxFds must be at most %d", MAX_FDS);

  struct iovec iov = {data, len};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } ctl;
  if (maxFds > 0) {
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * maxFds);
  }
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    if (e == ECONNRESET) return vk_throw(env, "NATIVE_ERROR", e, "recvmsg: the peer of fd %d reset the connection", fd);
    return vk_throw(env, "NATIVE_ERROR", e, "recvmsg on fd %d failed", fd);
  }

  /* Collect every fd the kernel installed (CMSG_SPACE rounding can admit more than maxFds). */
  int got[MAX_FDS + 2];
  size_t ngot = 0;
  if (maxFds > 0) {
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int* p = (int*)CMSG_DATA(c);
      for (size_t i = 0; i < k; i++) {
        int v;
        memcpy(&v, p + i, sizeof v);
        if (ngot < sizeof got / sizeof got[0]) got[ngot++] = v;
        else close(v);
      }
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) || ngot > maxFds) {
    for (size_t i = 0; i < ngot; i++) close(got[i]);
    return vk_throw(env, "NATIVE_ERROR", EMSGSIZE,
                    "recvmsg: the peer sent more fds than maxFds (%llu) with a %zd-byte message; the fds were closed and the "
                    "message is lost, so close the connection (protocol error)",
                    (unsigned long long)maxFds, n);
  }

  napi_value out, jfds, jbytes;
  napi_create_object(env, &out);
  napi_create_double(env, (double)n, &jbytes);
  napi_create_array_with_length(env, ngot, &jfds);
  for (size_t i = 0; i < ngot; i++) napi_set_element(env, jfds, (uint32_t)i, make_int(env, got[i]));
  napi_set_named_property(env, out, "bytes", jbytes);
  napi_set_named_property(env, out, "fds", jfds);
  return out;
}

napi_status vk_init_sock(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"socketpair", NULL, js_socketpair, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listenUnix", NULL, js_listen_unix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"accept", NULL, js_accept, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectUnix", NULL, js_connect_unix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendmsg", NULL, js_sendmsg, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvmsg", NULL, js_recvmsg, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
