/*
 * virtiokit native addon — module entry (raw Node-API, NAPI_VERSION 8, context aware: loads in
 * the main thread and in every worker_thread, each with its own state).
 *
 * init(errorFactory, sabView) is called once per environment by src/native/index.ts:
 *   errorFactory(code, message, errno | undefined) → the VirtioError to throw
 *   sabView(value) → a cached Uint8Array over `value` when it is a SharedArrayBuffer, else undefined
 */
#include "common.h"

#include <stdlib.h>

static void inst_finalize(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  vk_inst* inst = (vk_inst*)data;
  /* References die with the env. Handles still closing (poll.c) free the struct when done. */
  inst->env_gone = 1;
  if (inst->closing == 0) free(inst);
}

static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  vk_inst* inst = vk_get_inst(env);
  if (inst == NULL) return vk_throw(env, "INTERNAL", 0, "init: addon state missing");
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argv[0] != NULL) napi_typeof(env, argv[0], &t0);
  if (argv[1] != NULL) napi_typeof(env, argv[1], &t1);
  if (t0 != napi_function || t1 != napi_function) {
    return vk_throw(env, "INVALID_ARGUMENT", 0, "init(errorFactory, sabView): both arguments must be functions");
  }
  if (inst->err_factory) napi_delete_reference(env, inst->err_factory);
  if (inst->sab_view) napi_delete_reference(env, inst->sab_view);
  inst->err_factory = inst->sab_view = NULL;
  VK_CHECK(env, napi_create_reference(env, argv[0], 1, &inst->err_factory));
  VK_CHECK(env, napi_create_reference(env, argv[1], 1, &inst->sab_view));
  return NULL;
}

NAPI_MODULE_INIT() {
  vk_inst* inst = (vk_inst*)calloc(1, sizeof *inst);
  if (inst == NULL) {
    napi_throw_error(env, "NATIVE_ERROR", "virtiokit: out of memory while loading the addon");
    return NULL;
  }
  inst->env = env;
  if (napi_set_instance_data(env, inst, inst_finalize, NULL) != napi_ok) {
    free(inst);
    napi_throw_error(env, "INTERNAL", "virtiokit: napi_set_instance_data failed");
    return NULL;
  }
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, 1, props) != napi_ok || vk_init_copy(env, exports) != napi_ok ||
      vk_init_mem(env, exports) != napi_ok || vk_init_fds(env, exports) != napi_ok || vk_init_sock(env, exports) != napi_ok ||
      vk_init_poll(env, exports, inst) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, "INTERNAL", "virtiokit: defining the addon's functions failed");
    return NULL;
  }
  return exports;
}
