/*
 * virtiokit native addon — error construction and argument helpers (raw Node-API).
 */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

vk_inst* vk_get_inst(napi_env env) {
  void* data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return (vk_inst*)data;
}

napi_value vk_throw(napi_env env, const char* code, int err, const char* fmt, ...) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;

  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof msg) n = (int)sizeof msg - 1;
  if (err > 0) {
    char eb[128];
    const char* es = strerror_r(err, eb, sizeof eb); /* GNU variant */
    snprintf(msg + n, sizeof msg - (size_t)n, " (errno %d: %s)", err, es);
  }

  napi_value jcode, jmsg, jerrno, result = NULL;
  napi_get_undefined(env, &jerrno);
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &jcode) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &jmsg) != napi_ok) return NULL;
  if (err > 0) napi_create_int32(env, err, &jerrno);

  vk_inst* inst = vk_get_inst(env);
  napi_value factory = NULL;
  if (inst != NULL && inst->err_factory != NULL) napi_get_reference_value(env, inst->err_factory, &factory);
  if (factory != NULL) {
    napi_value recv, argv[3] = {jcode, jmsg, jerrno};
    napi_get_undefined(env, &recv);
    if (napi_call_function(env, recv, factory, 3, argv, &result) != napi_ok) {
      /* The factory threw: that exception is pending and is what the caller sees. */
      return NULL;
    }
  }
  if (result == NULL) {
    if (napi_create_error(env, jcode, jmsg, &result) != napi_ok) return NULL;
    if (err > 0) napi_set_named_property(env, result, "errno", jerrno);
  }
  napi_throw(env, result);
  return NULL;
}

int vk_is_undefined(napi_env env, napi_value v) {
  napi_valuetype t;
  if (v == NULL) return 1;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  return t == napi_undefined;
}

int vk_arg_uint(napi_env env, napi_value v, const char* fn, const char* name, uint64_t* out) {
  double d;
  if (v == NULL || napi_get_value_double(env, v, &d) != napi_ok || !vk_is_uint(d)) {
    if (v != NULL && napi_get_value_double(env, v, &d) == napi_ok) {
      vk_throw(env, "INVALID_ARGUMENT", 0, "%s: %s must be a non-negative integer below 2^53 (got %g)", fn, name, d);
    } else {
      vk_throw(env, "INVALID_ARGUMENT", 0, "%s: %s must be a number", fn, name);
    }
    return -1;
  }
  *out = (uint64_t)d;
  return 0;
}

int vk_arg_fd(napi_env env, napi_value v, const char* fn, int* out) {
  double d;
  if (v == NULL || napi_get_value_double(env, v, &d) != napi_ok || !vk_is_uint(d) || d > 2147483647.0) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "%s: fd must be a non-negative integer file descriptor", fn);
    return -1;
  }
  *out = (int)d;
  return 0;
}

int vk_arg_string(napi_env env, napi_value v, const char* fn, const char* name, char* buf, size_t cap, size_t* len) {
  size_t n = 0;
  if (v == NULL || napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "%s: %s must be a string", fn, name);
    return -1;
  }
  if (n + 1 > cap) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "%s: %s is too long (%zu bytes, at most %zu)", fn, name, n, cap - 1);
    return -1;
  }
  napi_get_value_string_utf8(env, v, buf, cap, &n);
  if (strlen(buf) != n) {
    vk_throw(env, "INVALID_ARGUMENT", 0, "%s: %s must not contain NUL characters", fn, name);
    return -1;
  }
  if (len != NULL) *len = n;
  return 0;
}

static int typed_bytes(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t count;
    void* d;
    if (napi_get_typedarray_info(env, v, &type, &count, &d, NULL, NULL) != napi_ok) return -1;
    size_t el = 1;
    switch (type) {
      case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: el = 1; break;
      case napi_int16_array: case napi_uint16_array: el = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: el = 4; break;
      default: el = 8; break;
    }
    *data = (uint8_t*)d;
    *len = count * el;
    return 0;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    void* d;
    if (napi_get_dataview_info(env, v, len, &d, NULL, NULL) != napi_ok) return -1;
    *data = (uint8_t*)d;
    return 0;
  }
  return -1;
}

int vk_buf_slow(napi_env env, napi_value v, const char* fn, const char* name, uint8_t** data, size_t* len) {
  if (v != NULL) {
    if (typed_bytes(env, v, data, len) == 0) return 0;
    /* A SharedArrayBuffer: Node-API cannot read it directly; the loader's helper returns a cached
     * Uint8Array over it (no allocation after the first call per buffer). */
    vk_inst* inst = vk_get_inst(env);
    napi_value helper = NULL, recv, view;
    if (inst != NULL && inst->sab_view != NULL && napi_get_reference_value(env, inst->sab_view, &helper) == napi_ok && helper != NULL) {
      napi_get_undefined(env, &recv);
      if (napi_call_function(env, recv, helper, 1, &v, &view) != napi_ok) return -1;
      if (!vk_is_undefined(env, view) && typed_bytes(env, view, data, len) == 0) return 0;
    }
  }
  vk_throw(env, "INVALID_ARGUMENT", 0, "%s: %s must be an ArrayBuffer or SharedArrayBuffer", fn, name);
  return -1;
}

int vk_is_detached(napi_env env, napi_value v) {
  bool d = false;
  if (napi_is_detached_arraybuffer(env, v, &d) != napi_ok) return 0;
  return d;
}

int vk_arg_bytes(napi_env env, napi_value v, const char* fn, const char* name, uint8_t** data, size_t* len) {
  if (v != NULL && typed_bytes(env, v, data, len) == 0) return 0;
  vk_throw(env, "INVALID_ARGUMENT", 0, "%s: %s must be a Uint8Array (or another typed array / DataView)", fn, name);
  return -1;
}
