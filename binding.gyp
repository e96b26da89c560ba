{
  "targets": [
    {
      "target_name": "virtiokit",
      "sources": [
        "native/addon.c",
        "native/common.c",
        "native/copy.c",
        "native/mem.c",
        "native/fds.c",
        "native/sock.c",
        "native/poll.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
