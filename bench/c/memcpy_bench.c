/*
 * virtiokit DMA benchmark: C memcpy reference (the physical limit of a bounce copy).
 *
 * For each size: copy buffer i of a source array to buffer i of a destination array, rotating
 * over `nbuf` buffers (stride = size rounded up to 4 KiB, both arrays page-aligned, pre-faulted),
 * through libc memcpy called via a volatile function pointer so the compiler cannot elide or
 * inline it. The working set rotation is the same as the JavaScript bounce-pool measurement
 * (src/bench/dma/copy-bench.ts), so the two are comparable.
 *
 * Usage: memcpy_bench --sizes 512,4096,... --ms N --reps R
 * Prints one JSON object: {"ok":true,"results":[{"size":S,"nbuf":B,"gbps":[...]}...]}
 * or {"ok":false,"error":"..."} with exit code 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SIZES 64
#define MAX_REPS 100
#define WORKING_SET (8u << 20)
#define MAX_NBUF 32

static void *(*volatile copy_fn)(void *, const void *, size_t) = memcpy;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int fail(const char *msg) {
  printf("{\"ok\":false,\"error\":\"%s\"}\n", msg);
  return 2;
}

/** Buffers in the rotation for `size` (same rule as copy-bench.ts: at most 8 MiB, 1..32 buffers). */
static size_t nbuf_for(size_t size) {
  size_t n = WORKING_SET / size;
  if (n < 1) n = 1;
  if (n > MAX_NBUF) n = MAX_NBUF;
  return n;
}

int main(int argc, char **argv) {
  size_t sizes[MAX_SIZES];
  int nsizes = 0;
  double ms = 50;
  int reps = 3;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
      char *s = argv[++i];
      while (*s != '\0') {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > (64u << 20) || nsizes == MAX_SIZES) return fail("--sizes: comma-separated sizes 1..67108864, at most 64");
        sizes[nsizes++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') return fail("--sizes: comma-separated sizes");
      }
    } else if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc) {
      ms = atof(argv[++i]);
      if (!(ms > 0 && ms <= 60000)) return fail("--ms must be in (0, 60000]");
    } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = atoi(argv[++i]);
      if (reps < 1 || reps > MAX_REPS) return fail("--reps must be 1..100");
    } else {
      return fail("usage: memcpy_bench --sizes 512,4096 --ms N --reps R");
    }
  }
  if (nsizes == 0) return fail("--sizes is required");

  size_t maxbytes = 0;
  for (int k = 0; k < nsizes; k++) {
    size_t stride = (sizes[k] + 4095) & ~(size_t)4095;
    size_t b = stride * nbuf_for(sizes[k]);
    if (b > maxbytes) maxbytes = b;
  }
  unsigned char *src = aligned_alloc(4096, maxbytes);
  unsigned char *dst = aligned_alloc(4096, maxbytes);
  if (src == NULL || dst == NULL) return fail("out of memory");
  for (size_t i = 0; i < maxbytes; i++) {
    src[i] = (unsigned char)(i * 31u + 7u);
    dst[i] = 0;
  }

  printf("{\"ok\":true,\"results\":[");
  uint64_t check = 0;
  for (int k = 0; k < nsizes; k++) {
    size_t size = sizes[k];
    size_t stride = (size + 4095) & ~(size_t)4095;
    size_t nbuf = nbuf_for(size);
    /* warm-up: a quarter of the measuring time */
    double end = now_ns() + ms * 1e6 / 4;
    size_t b = 0;
    while (now_ns() < end) {
      for (int j = 0; j < 64; j++) {
        copy_fn(dst + b * stride, src + b * stride, size);
        if (++b == nbuf) b = 0;
      }
    }
    printf("%s{\"size\":%zu,\"nbuf\":%zu,\"gbps\":[", k ? "," : "", size, nbuf);
    for (int r = 0; r < reps; r++) {
      uint64_t copies = 0;
      double t0 = now_ns();
      double t1 = t0;
      double stop = t0 + ms * 1e6;
      while (t1 < stop) {
        for (int j = 0; j < 64; j++) {
          copy_fn(dst + b * stride, src + b * stride, size);
          if (++b == nbuf) b = 0;
        }
        copies += 64;
        t1 = now_ns();
      }
      check += dst[(b * stride) % maxbytes];
      printf("%s%.4f", r ? "," : "", (double)copies * (double)size / (t1 - t0));
    }
    printf("]}");
  }
  printf("],\"check\":%llu}\n", (unsigned long long)check);
  free(src);
  free(dst);
  return 0;
}
