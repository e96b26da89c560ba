/*
 * virtiokit native addon — hot copy entry points (raw Node-API, no allocation per call).
 *
 * copy(dst, dstOff, src, srcOff, len)       memmove with bounds checks
 * copyBatch(bufs, ops: Float64Array, count) scatter-gather: all records validated, then copied
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <emmintrin.h> /* SSE2: baseline on x86-64 */
#endif

#define MAX_BATCH_BUFS 1024
#define STACK_RECS 256

/* Report a bounds failure: CLOSED when a buffer was unmapped/detached, else INVALID_ARGUMENT. */
static napi_value bounds_error(napi_env env, napi_value buf, const char* fn, const char* what, uint64_t off, uint64_t len, size_t size) {
  if (buf != NULL && vk_is_detached(env, buf)) {
    return vk_throw(env, "CLOSED", 0, "%s: %s was unmapped (munmap) or detached; map the memory again before copying", fn, what);
  }
  return vk_throw(env, "INVALID_ARGUMENT", 0, "%s: %s range [%llu, +%llu) exceeds its %zu bytes", fn, what,
                  (unsigned long long)off, (unsigned long long)len, size);
}

static napi_value js_copy(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) return vk_throw(env, "INVALID_ARGUMENT", 0, "copy(dst, dstOff, src, srcOff, len): 5 arguments expected, got %zu", argc);
  uint8_t *dst, *src;
  size_t dlen, slen;
  double dOff, sOff, len;
  if (vk_buf(env, argv[0], "copy", "dst", &dst, &dlen) != 0) return NULL;
  if (vk_buf(env, argv[2], "copy", "src", &src, &slen) != 0) return NULL;
  if (napi_get_value_double(env, argv[1], &dOff) != napi_ok || napi_get_value_double(env, argv[3], &sOff) != napi_ok ||
      napi_get_value_double(env, argv[4], &len) != napi_ok || !vk_is_uint(dOff) || !vk_is_uint(sOff) || !vk_is_uint(len)) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "copy: dstOff, srcOff and len must be non-negative integers");
  }
  uint64_t d = (uint64_t)dOff, s = (uint64_t)sOff, n = (uint64_t)len;
  if (d > dlen || n > dlen - d) return bounds_error(env, argv[0], "copy", "dst", d, n, dlen);
  if (s > slen || n > slen - s) return bounds_error(env, argv[2], "copy", "src", s, n, slen);
  if (n != 0) memmove(dst + d, src + s, (size_t)n);
  return NULL;
}

typedef struct {
  uint8_t* data;
  size_t len;
  napi_value v;
  int kind; /* 0 ArrayBuffer, 1 typed array / DataView, 2 SharedArrayBuffer (cannot detach) */
} bufent;

/* A validated record: pointers resolved in pass 1, so pass 2 never re-reads `ops` (which may be
 * shared memory another thread changes, or a buffer an earlier record overwrites). */
typedef struct {
  uint8_t* dst;
  const uint8_t* src;
  size_t n;
} rec;

/*
 * Is record r = [dstIndex, dstOff, srcIndex, srcOff, len] made of integers in [0, 2^52) with both
 * indices below nb? NaN fails every comparison. Values of 2^52 and more are refused here although
 * they are safe integers: no buffer is that large, so the bounds check would refuse them anyway.
 * Integrality: for 0 <= x < 2^52, (x + 2^52) - 2^52 == x exactly when x is an integer.
 */
#if defined(__x86_64__)
static inline int record_ok(const double* r, double nb) {
  const __m128d zero = _mm_setzero_pd(), lim = _mm_set1_pd(4503599627370496.0);
  const __m128d a = _mm_loadu_pd(r), b = _mm_loadu_pd(r + 2), c = _mm_load_sd(r + 4);
  __m128d m = _mm_and_pd(_mm_and_pd(_mm_cmpge_pd(a, zero), _mm_cmplt_pd(a, lim)), _mm_and_pd(_mm_cmpge_pd(b, zero), _mm_cmplt_pd(b, lim)));
  m = _mm_and_pd(m, _mm_cmpeq_pd(_mm_sub_pd(_mm_add_pd(a, lim), lim), a));
  m = _mm_and_pd(m, _mm_cmpeq_pd(_mm_sub_pd(_mm_add_pd(b, lim), lim), b));
  m = _mm_and_pd(m, _mm_cmplt_pd(_mm_unpacklo_pd(a, b), _mm_set1_pd(nb)));
  const __m128d mc = _mm_and_pd(_mm_and_pd(_mm_cmpge_sd(c, zero), _mm_cmplt_sd(c, lim)), _mm_cmpeq_sd(_mm_sub_sd(_mm_add_sd(c, lim), lim), c));
  return (_mm_movemask_pd(m) == 3) & (_mm_movemask_pd(mc) & 1);
}
#else
static inline int field_ok(double x) {
  const double lim = 4503599627370496.0;
  return (x >= 0) & (x < lim) & ((x + lim) - lim == x);
}
static inline int record_ok(const double* r, double nb) {
  return field_ok(r[0]) & field_ok(r[1]) & field_ok(r[2]) & field_ok(r[3]) & field_ok(r[4]) & (r[0] < nb) & (r[2] < nb);
}
#endif

/* Resolve bufs[b] (first use in this call). 0 = ok, -1 = thrown. */
static __attribute__((noinline)) int resolve_buf(napi_env env, napi_value arr, uint32_t b, bufent* e) {
  if (napi_get_element(env, arr, b, &e->v) != napi_ok) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: cannot read bufs[%u]", b);
    return -1;
  }
  void* d;
  if (napi_get_arraybuffer_info(env, e->v, &d, &e->len) == napi_ok) {
    e->data = (uint8_t*)d;
    e->kind = 0;
    return 0;
  }
  char name[24];
  snprintf(name, sizeof name, "bufs[%u]", b);
  if (vk_buf_slow(env, e->v, "copyBatch", name, &e->data, &e->len) != 0) return -1;
  bool ta = false, dv = false;
  napi_is_typedarray(env, e->v, &ta);
  napi_is_dataview(env, e->v, &dv);
  e->kind = (ta || dv) ? 1 : 2;
  return 0;
}

/*
 * After pass 1: is every resolved buffer still where it was? An accessor on `bufs` (napi_get_element
 * runs getters) could have run JS that unmapped, detached or transferred a buffer resolved earlier.
 * No JS runs between this check and the copies.
 */
static __attribute__((noinline)) int still_valid(napi_env env, const bufent* bufs, const uint8_t* have, uint32_t nbufs) {
  for (uint32_t b = 0; b < nbufs; b++) {
    if (!have[b] || bufs[b].kind == 2) continue;
    uint8_t* d = NULL;
    size_t len = 0;
    void* p;
    if (bufs[b].kind == 0) {
      if (napi_get_arraybuffer_info(env, bufs[b].v, &p, &len) != napi_ok) return 0;
      d = (uint8_t*)p;
    } else if (vk_buf_slow(env, bufs[b].v, "copyBatch", "buffer", &d, &len) != 0) {
      return 0;
    }
    if (d != bufs[b].data || len != bufs[b].len) return 0;
  }
  return 1;
}

/* Explain why record i was refused (cold path). */
static __attribute__((noinline)) void record_error(napi_env env, napi_value arr, size_t i, const double* r, uint32_t nbufs, const bufent* bufs) {
  for (int k = 0; k < 5; k++) {
    if (!vk_is_uint(r[k])) {
      vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: record %zu has a field that is not a non-negative integer ([%g, %g, %g, %g, %g])", i, r[0],
               r[1], r[2], r[3], r[4]);
      return;
    }
  }
  if (r[0] >= nbufs || r[2] >= nbufs) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: record %zu names buffer %.0f/%.0f but bufs has %u entries", i, r[0], r[2], nbufs);
    return;
  }
  if (r[1] >= 4503599627370496.0 || r[3] >= 4503599627370496.0 || r[4] >= 4503599627370496.0) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: record %zu has an offset or length of 2^52 or more ([%.0f, %.0f, %.0f, %.0f, %.0f])", i, r[0], r[1],
             r[2], r[3], r[4]);
    return;
  }
  for (int k = 0; k < 2; k++) {
    uint32_t b = (uint32_t)r[k * 2];
    uint64_t off = (uint64_t)r[k * 2 + 1], n = (uint64_t)r[4];
    if (off > bufs[b].len || n > bufs[b].len - off) {
      char what[64];
      napi_value el = NULL;
      snprintf(what, sizeof what, "record %zu %s (bufs[%u])", i, k == 0 ? "dst" : "src", b);
      napi_get_element(env, arr, b, &el);
      bounds_error(env, el, "copyBatch", what, off, n, bufs[b].len);
      return;
    }
  }
  vk_throw(env, "INTERNAL", 0, "copyBatch: record %zu refused", i);
}

static napi_value js_copy_batch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch(bufs, ops, count): 3 arguments expected, got %zu", argc);

  uint32_t nbufs = 0;
  if (napi_get_array_length(env, argv[0], &nbufs) != napi_ok) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: bufs must be an array of ArrayBuffers");
  }
  if (nbufs > MAX_BATCH_BUFS) return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: at most %d buffers (got %u)", MAX_BATCH_BUFS, nbufs);

  napi_typedarray_type type;
  size_t opsLen;
  void* opsData;
  if (napi_get_typedarray_info(env, argv[1], &type, &opsLen, &opsData, NULL, NULL) != napi_ok || type != napi_float64_array) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: ops must be a Float64Array of [dstIndex, dstOff, srcIndex, srcOff, len] records");
  }
  double cnt;
  if (napi_get_value_double(env, argv[2], &cnt) != napi_ok || !vk_is_uint(cnt)) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: count must be a non-negative integer");
  }
  if (cnt * 5 > (double)opsLen) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: count %.0f needs %.0f numbers but ops holds %zu", cnt, cnt * 5, opsLen);
  }
  const size_t count = (size_t)cnt;
  const double* ops = (const double*)opsData;

  bufent bufs[MAX_BATCH_BUFS];
  uint8_t have[MAX_BATCH_BUFS];
  memset(have, 0, nbufs);
  rec stackrecs[STACK_RECS];
  rec* recs = stackrecs;
  if (count > STACK_RECS) {
    recs = (rec*)malloc(count * sizeof(rec));
    if (recs == NULL) return vk_throw(env, "NATIVE_ERROR", 12, "copyBatch: cannot allocate %zu records", count);
  }
  napi_value result = NULL;

  /* Pass 1: validate every record (and resolve the buffers it names). The record is read once
   * into locals; every field must be an integer in [0, 2^53), indices below nbufs. */
  const double nb = (double)nbufs;
  double total = 0;
  for (size_t i = 0; i < count; i++) {
    const double* r = ops + i * 5;
    if (__builtin_expect(!record_ok(r, nb), 0)) goto bad;
    /* record_ok proved every field an integer in [0, 2^52): these conversions are exact. */
    const int64_t ldi = (int64_t)r[0], ldoff = (int64_t)r[1], lsi = (int64_t)r[2], lsoff = (int64_t)r[3], llen = (int64_t)r[4];
    const uint32_t bd = (uint32_t)ldi, bs = (uint32_t)lsi;
    if (__builtin_expect(!have[bd], 0)) {
      if (resolve_buf(env, argv[0], bd, &bufs[bd]) != 0) goto out;
      have[bd] = 1;
    }
    if (__builtin_expect(!have[bs], 0)) {
      if (resolve_buf(env, argv[0], bs, &bufs[bs]) != 0) goto out;
      have[bs] = 1;
    }
    /* Each term is below 2^53: the sums cannot overflow 64 bits. */
    if (__builtin_expect((uint64_t)ldoff + (uint64_t)llen > bufs[bd].len || (uint64_t)lsoff + (uint64_t)llen > bufs[bs].len, 0)) goto bad;
    recs[i].dst = bufs[bd].data + ldoff;
    recs[i].src = bufs[bs].data + lsoff;
    recs[i].n = (size_t)llen;
    total += r[4];
    continue;
  bad:
    record_error(env, argv[0], i, r, nbufs, bufs);
    goto out;
  }

  if (!still_valid(env, bufs, have, nbufs)) {
    vk_throw(env, "CLOSED", 0, "copyBatch: a buffer was unmapped or detached while the batch was being validated; nothing was copied");
    goto out;
  }

  /* Pass 2: copy. */
  for (size_t i = 0; i < count; i++) {
    if (recs[i].n != 0) memmove(recs[i].dst, recs[i].src, recs[i].n);
  }
  napi_create_double(env, total, &result);
out:
  if (recs != stackrecs) free(recs);
  return result;
}

napi_status vk_init_copy(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"copy", NULL, js_copy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyBatch", NULL, js_copy_batch, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
