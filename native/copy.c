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
} bufent;

/* A validated record: pointers resolved in pass 1, so pass 2 never re-reads `ops` (which may be
 * shared memory another thread changes, or a buffer an earlier record overwrites). */
typedef struct {
  uint8_t* dst;
  const uint8_t* src;
  size_t n;
} rec;

static napi_value js_copy_batch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch(bufs, ops, count): 3 arguments expected, got %zu", argc);

  uint32_t nbufs = 0;
  bool isarr = false;
  if (napi_is_array(env, argv[0], &isarr) != napi_ok || !isarr || napi_get_array_length(env, argv[0], &nbufs) != napi_ok) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: bufs must be an array of ArrayBuffers");
  }
  if (nbufs > MAX_BATCH_BUFS) return vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: at most %d buffers (got %u)", MAX_BATCH_BUFS, nbufs);

  napi_typedarray_type type;
  size_t opsLen;
  void* opsData;
  bool ista = false;
  if (napi_is_typedarray(env, argv[1], &ista) != napi_ok || !ista ||
      napi_get_typedarray_info(env, argv[1], &type, &opsLen, &opsData, NULL, NULL) != napi_ok || type != napi_float64_array) {
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

  /* Pass 1: validate every record (and resolve the buffers it names). */
  const unsigned gen = vk_unmap_generation;
  double total = 0;
  for (size_t i = 0; i < count; i++) {
    const double* r = ops + i * 5;
    double di = r[0], doff = r[1], si = r[2], soff = r[3], len = r[4];
    if (!vk_is_uint(di) || !vk_is_uint(si) || !vk_is_uint(doff) || !vk_is_uint(soff) || !vk_is_uint(len)) {
      vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: record %zu has a field that is not a non-negative integer ([%g, %g, %g, %g, %g])", i, di, doff, si, soff, len);
      goto out;
    }
    if (di >= nbufs || si >= nbufs) {
      vk_throw(env, "INVALID_ARGUMENT", 0, "copyBatch: record %zu names buffer %.0f/%.0f but bufs has %u entries", i, di, si, nbufs);
      goto out;
    }
    uint32_t idx[2] = {(uint32_t)di, (uint32_t)si};
    uint64_t off[2] = {(uint64_t)doff, (uint64_t)soff};
    uint64_t n = (uint64_t)len;
    for (int k = 0; k < 2; k++) {
      uint32_t b = idx[k];
      napi_value el = NULL;
      if (!have[b]) {
        char name[24];
        snprintf(name, sizeof name, "bufs[%u]", b);
        if (napi_get_element(env, argv[0], b, &el) != napi_ok) goto out;
        if (vk_buf(env, el, "copyBatch", name, &bufs[b].data, &bufs[b].len) != 0) goto out;
        have[b] = 1;
      }
      if (off[k] > bufs[b].len || n > bufs[b].len - off[k]) {
        char what[48];
        snprintf(what, sizeof what, "record %zu %s (bufs[%u])", i, k == 0 ? "dst" : "src", b);
        if (el == NULL) napi_get_element(env, argv[0], b, &el);
        bounds_error(env, el, "copyBatch", what, off[k], n, bufs[b].len);
        goto out;
      }
    }
    recs[i].dst = bufs[idx[0]].data + off[0];
    recs[i].src = bufs[idx[1]].data + off[1];
    recs[i].n = (size_t)n;
    total += len;
  }

  /* An accessor on `bufs` could have run JS that unmapped a buffer resolved above. */
  if (gen != vk_unmap_generation) {
    vk_throw(env, "CLOSED", 0, "copyBatch: a buffer was unmapped while the batch was being validated; nothing was copied");
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
