/*
 * virtiokit native addon — shared memory: memfd_create, mmap into external ArrayBuffers, munmap.
 *
 * Every mapping has a record in a process-wide list (mutex protected; each env only sees its own).
 * A mapping is unmapped exactly once: by munmap(buf) — which detaches the ArrayBuffer first, so no
 * view can reach the unmapped pages — or by the ArrayBuffer's finalizer after garbage collection.
 * The record itself is freed by the finalizer (Node calls it once the backing store is released,
 * including after a detach), so the finalizer never acts on an address reused by a newer mapping.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* V8 refuses external ArrayBuffers above 2^32 bytes (and then runs the finalizer itself). */
#define MAX_MAPPING 4294967296ULL

typedef struct mapping {
  void* addr;
  size_t len;
  napi_env env;
  int mapped; /* 1 while the pages are mapped */
  int linked; /* 1 while in the list */
  struct mapping *prev, *next;
} mapping;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static mapping* g_head = NULL;

static void unlink_locked(mapping* m) {
  if (!m->linked) return;
  if (m->prev) m->prev->next = m->next;
  else g_head = m->next;
  if (m->next) m->next->prev = m->prev;
  m->prev = m->next = NULL;
  m->linked = 0;
}

/* Find the live mapping of `env` that starts at `addr`. Caller holds the lock. */
static mapping* find_locked(napi_env env, void* addr) {
  for (mapping* m = g_head; m != NULL; m = m->next) {
    if (m->addr == addr && m->env == env && m->mapped) return m;
  }
  return NULL;
}

static void finalize_mapping(napi_env env, void* data, void* hint) {
  (void)env;
  (void)data;
  mapping* m = (mapping*)hint;
  pthread_mutex_lock(&g_lock);
  unlink_locked(m);
  int was_mapped = m->mapped;
  m->mapped = 0;
  pthread_mutex_unlock(&g_lock);
  if (was_mapped) munmap(m->addr, m->len);
  free(m);
}

static long page_size(void) {
  static long ps = 0;
  if (ps == 0) ps = sysconf(_SC_PAGESIZE);
  return ps;
}

/* memfdCreate(name, size) */
static napi_value js_memfd_create(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[250];
  uint64_t size;
  if (vk_arg_string(env, argv[0], "memfdCreate", "name", name, sizeof name, NULL) != 0) return NULL;
  if (vk_arg_uint(env, argv[1], "memfdCreate", "size", &size) != 0) return NULL;
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return vk_throw(env, "NATIVE_ERROR", errno, "memfdCreate(%s): memfd_create failed", name);
  if (ftruncate(fd, (off_t)size) != 0) {
    int e = errno;
    close(fd);
    return vk_throw(env, "NATIVE_ERROR", e, "memfdCreate(%s): cannot size it to %llu bytes", name, (unsigned long long)size);
  }
  /* Nobody may shrink it later: a mapping past the end of a memfd faults with SIGBUS. */
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
    int e = errno;
    close(fd);
    return vk_throw(env, "NATIVE_ERROR", e, "memfdCreate(%s): cannot seal it against shrinking", name);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* mmap(fd, offset, length, writable) */
static napi_value js_mmap(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4] = {NULL, NULL, NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  uint64_t off, len;
  bool writable = false;
  if (vk_arg_fd(env, argv[0], "mmap", &fd) != 0) return NULL;
  if (vk_arg_uint(env, argv[1], "mmap", "offset", &off) != 0) return NULL;
  if (vk_arg_uint(env, argv[2], "mmap", "length", &len) != 0) return NULL;
  if (argv[3] != NULL && napi_get_value_bool(env, argv[3], &writable) != napi_ok) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "mmap: writable must be a boolean");
  }
  if (len == 0) return vk_throw(env, "INVALID_ARGUMENT", 0, "mmap: length must be > 0");
  if (len > MAX_MAPPING) {
    return vk_throw(env, "INVALID_ARGUMENT", 0,
                    "mmap: length %llu exceeds 4 GiB, the largest ArrayBuffer Node.js can wrap; map the fd as several windows of at most 4 GiB",
                    (unsigned long long)len);
  }
  if (off % (uint64_t)page_size() != 0) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "mmap: offset %llu is not a multiple of the page size (%ld)", (unsigned long long)off, page_size());
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return vk_throw(env, "NATIVE_ERROR", errno, "mmap: fd %d is not an open file descriptor", fd);
  if (S_ISREG(st.st_mode) && (off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off)) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "mmap: [%llu, +%llu) lies beyond the end of fd %d (%lld bytes); touching it would fault",
                    (unsigned long long)off, (unsigned long long)len, fd, (long long)st.st_size);
  }
  if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "mmap: fd %d is not a file, memfd or device (cannot be mapped)", fd);
  }

  /* A read-only request is a private mapping that JS may still write to (copy-on-write): V8 has no
   * read-only ArrayBuffers, so PROT_READ would let one stray store crash the process. Writes to it
   * never reach the fd. */
  int flags = writable ? MAP_SHARED : MAP_PRIVATE;
  void* p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, flags, fd, (off_t)off);
  if (p == MAP_FAILED) {
    return vk_throw(env, "NATIVE_ERROR", errno, "mmap: mapping %llu bytes of fd %d at offset %llu failed%s", (unsigned long long)len, fd,
                    (unsigned long long)off, writable ? " (is the fd open for writing?)" : "");
  }
  mapping* m = (mapping*)calloc(1, sizeof *m);
  if (m == NULL) {
    munmap(p, (size_t)len);
    return vk_throw(env, "NATIVE_ERROR", ENOMEM, "mmap: out of memory");
  }
  m->addr = p;
  m->len = (size_t)len;
  m->env = env;
  m->mapped = 1;
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, (size_t)len, finalize_mapping, m, &ab) != napi_ok) {
    /* Node may already have run the finalizer (it does when the length is refused), so `m` and the
     * mapping may be gone: touching either could double-free. The length guard above makes this
     * path unreachable in practice; at worst a mapping leaks. */
    return vk_throw(env, "NATIVE_ERROR", 0, "mmap: Node.js refused to wrap %llu bytes in an ArrayBuffer", (unsigned long long)len);
  }
  pthread_mutex_lock(&g_lock);
  m->next = g_head;
  if (g_head) g_head->prev = m;
  g_head = m;
  m->linked = 1;
  pthread_mutex_unlock(&g_lock);
  return ab;
}

/* munmap(buf) */
static napi_value js_munmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void* data = NULL;
  size_t len = 0;
  if (argv[0] == NULL || napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "munmap: buf must be an ArrayBuffer returned by mmap");
  }
  if (data == NULL) return NULL; /* detached: already unmapped */
  pthread_mutex_lock(&g_lock);
  mapping* m = find_locked(env, data);
  pthread_mutex_unlock(&g_lock);
  if (m == NULL || m->len != len) {
    if (vk_is_detached(env, argv[0])) return NULL;
    return vk_throw(env, "INVALID_ARGUMENT", 0, "munmap: buf is not a mapping made by mmap (or not in this thread)");
  }
  /* Detach first: if that fails, nothing is unmapped and views stay valid. */
  napi_status st = napi_detach_arraybuffer(env, argv[0]);
  if (st != napi_ok) {
    return vk_throw(env, "NATIVE_ERROR", 0, "munmap: cannot detach the ArrayBuffer (status %d); the mapping is kept", (int)st);
  }
  pthread_mutex_lock(&g_lock);
  int was_mapped = m->mapped;
  m->mapped = 0;
  unlink_locked(m);
  pthread_mutex_unlock(&g_lock);
  /* `m` stays allocated: the finalizer frees it. */
  if (was_mapped) munmap(data, len);
  return NULL;
}

/* isMapped(buf) */
static napi_value js_is_mapped(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void* data = NULL;
  size_t len = 0;
  bool res = false;
  if (argv[0] != NULL && napi_get_arraybuffer_info(env, argv[0], &data, &len) == napi_ok && data != NULL) {
    pthread_mutex_lock(&g_lock);
    mapping* m = find_locked(env, data);
    res = m != NULL && m->len == len;
    pthread_mutex_unlock(&g_lock);
  }
  napi_value out;
  napi_get_boolean(env, res, &out);
  return out;
}

napi_status vk_init_mem(napi_env env, napi_value exports) {
  napi_value ps;
  napi_status s = napi_create_int64(env, page_size(), &ps);
  if (s != napi_ok) return s;
  napi_property_descriptor props[] = {
      {"memfdCreate", NULL, js_memfd_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mmap", NULL, js_mmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"munmap", NULL, js_munmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isMapped", NULL, js_is_mapped, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pageSize", NULL, NULL, NULL, NULL, ps, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
