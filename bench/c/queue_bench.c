/*
 * virtiokit queue benchmark: C reference program.
 *
 * The same workload as src/bench/queue-*.ts, written in plain C so the JS numbers have a yardstick.
 * Its own small split and packed ring code (device side and driver side), written from the
 * virtio 1.4 layouts (split: 16 B descriptors, avail {flags, idx, ring[]}, used {flags, idx,
 * ring[{id, len}]}; packed: 16 B descriptors {addr, len, id, flags} with AVAIL/USED wrap bits).
 * The device side makes the checks a real device makes: avail index not more than the queue size
 * ahead, head and next indices in range, a chain-length TTL (no loops), every buffer inside guest
 * memory, readable segments before writable ones, buffer ids in range.
 *
 * Workload (perf-limits.md section 4): queue size 256, batches of 64.
 *   1 descriptor:  one 64 B device-writable buffer; the device writes its first byte (status).
 *   3 descriptors: virtio-blk read: 16 B header (device-readable, written by the driver),
 *                  4 KiB data (device-writable), 1 B status (device-writable). The device reads the
 *                  header, writes the status byte (OK for VIRTIO_BLK_T_IN) and the used element.
 * The driver sets the status byte to 0xff when posting and checks it reads 0 when reclaiming.
 *
 * Modes: --agents 1: driver and device alternate in batches of 64 in one thread.
 *        --agents 2: driver in the main thread, device in a pthread; after each publish the
 *        driver bumps a "notify" counter (release), after each used batch the device bumps an
 *        "interrupt" counter (release); each side busy-polls the other's counter (acquire),
 *        bounded in time (--timeout-ms without progress -> exit 3).
 *
 * --sides 1 (two agents only): also time each side's busy calls with CLOCK_MONOTONIC — driver_post
 *        and driver_reclaim calls that moved chains, device_batch calls that served some — and
 *        print "sides":{"post_ns","reclaim_ns","device_ns"} per chain over the timed repetitions
 *        (two clock reads per call; the JS harness does the same with --sides).
 *
 * Output: one JSON object on stdout. Exit codes: 0 ok, 2 bad arguments, 3 timeout,
 * 4 ring/check error.
 *
 * Build: cc -O2 -pthread -o queue_bench queue_bench.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QS 256u
#define QMASK (QS - 1u)
#define BATCH 64u
#define MAX_SEGS 4u

/* Guest memory layout (identical to src/bench/queue-layout.ts). */
#define GPA_BASE 0x100000ull
#define MEM_SIZE 0x120000u
#define DESC_OFF 0x0000u
#define DRIVER_OFF 0x1000u
#define DEVICE_OFF 0x2000u
#define HDR_OFF 0x3000u
#define STATUS_OFF 0x4000u
#define BUF1_OFF 0x5000u
#define BUF1_LEN 64u
#define DATA_OFF 0x10000u
#define DATA_LEN 4096u
#define HDR_LEN 16u

#define F_NEXT 1u
#define F_WRITE 2u
#define F_INDIRECT 4u
#define F_AVAIL (1u << 7)
#define F_USED (1u << 15)

#define BLK_T_IN 0u
#define BLK_S_OK 0u
#define BLK_S_UNSUPP 2u

/* Hot functions take the ring kind and chain length as compile-time constants (one copy per cell). */
#define HOT static inline __attribute__((always_inline))

#define ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* ------------------------------------------------------------------ memory */

struct mem {
  uint8_t *p;
  uint64_t base;
  uint64_t size;
};

/* Pointer for [addr, addr+len) or NULL when not entirely inside guest memory. */
static inline uint8_t *gpa(const struct mem *m, uint64_t addr, uint32_t len) {
  if (addr < m->base) return NULL;
  uint64_t off = addr - m->base;
  if (off > m->size || len > m->size - off) return NULL;
  return m->p + off;
}

static inline uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void st16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void st64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A popped chain: host pointers and lengths, readable segments first. */
struct chain {
  uint32_t head;
  uint32_t count;
  uint32_t readable;
  uint32_t ndesc;
  uint8_t *ptr[MAX_SEGS];
  uint32_t len[MAX_SEGS];
};

static const char *g_error = NULL;
static int fail(const char *why) {
  if (!g_error) g_error = why;
  return -1;
}

/* ------------------------------------------------------------ split device */

struct split_dev {
  struct mem m;
  uint8_t *desc;  /* 16 * QS */
  uint8_t *avail; /* flags @0, idx @2, ring @4 */
  uint8_t *used;  /* flags @0, idx @2, ring @4 (8 B each) */
  uint16_t last_avail;
  uint16_t avail_cache; /* last avail idx read from the ring */
  uint16_t used_idx;
  int parked;
};

/* 1 = popped, 0 = nothing available, -1 = guest error (queue parked). */
HOT int split_pop(struct split_dev *d, struct chain *c) {
  if (d->parked) return 0;
  uint16_t last = d->last_avail;
  if (d->avail_cache == last) {
    /* re-read the index only when everything seen so far was consumed */
    uint16_t aidx = ACQ((uint16_t *)(d->avail + 2));
    if (aidx == last) return 0;
    if ((uint16_t)(aidx - last) > QS) { d->parked = 1; return fail("avail idx more than queue size ahead"); }
    d->avail_cache = aidx;
  }
  uint32_t head = ld16(d->avail + 4 + 2 * (last & QMASK));
  if (head >= QS) { d->parked = 1; return fail("head index out of range"); }
  uint32_t i = head, n = 0, readable = 0, ttl = QS;
  for (;;) {
    if (ttl-- == 0) { d->parked = 1; return fail("descriptor chain loops"); }
    const uint8_t *e = d->desc + 16 * i;
    uint64_t addr = ld64(e);
    uint32_t len = ld32(e + 8);
    uint32_t flags = ld16(e + 12);
    if (flags & F_INDIRECT) { d->parked = 1; return fail("indirect not negotiated"); }
    uint8_t *p = gpa(&d->m, addr, len);
    if (!p) { d->parked = 1; return fail("buffer outside guest memory"); }
    if (flags & F_WRITE) {
      /* writable */
    } else {
      if (readable != n) { d->parked = 1; return fail("readable after writable"); }
      readable++;
    }
    if (n >= MAX_SEGS) { d->parked = 1; return fail("chain too long for this device"); }
    c->ptr[n] = p;
    c->len[n] = len;
    n++;
    if (!(flags & F_NEXT)) break;
    i = ld16(e + 14);
    if (i >= QS) { d->parked = 1; return fail("next index out of range"); }
  }
  c->head = head;
  c->count = n;
  c->readable = readable;
  c->ndesc = n;
  d->last_avail = (uint16_t)(last + 1);
  return 1;
}

HOT void split_push_batch(struct split_dev *d, const uint32_t *heads, const uint32_t *lens, uint32_t n) {
  uint16_t u = d->used_idx;
  uint8_t *ring = d->used + 4;
  for (uint32_t k = 0; k < n; k++) {
    uint8_t *e = ring + 8 * ((u + k) & QMASK);
    st32(e, heads[k]);
    st32(e + 4, lens[k]);
  }
  u = (uint16_t)(u + n);
  d->used_idx = u;
  REL((uint16_t *)(d->used + 2), u);
}

/* ------------------------------------------------------------ split driver */

struct split_drv {
  struct mem m;
  uint8_t *desc, *avail, *used;
  uint16_t free_head;
  uint32_t num_free;
  uint16_t avail_shadow;
  uint16_t last_used;
  uint16_t used_cache; /* last used idx read from the ring */
  int32_t token[QS];
  uint32_t ndesc[QS];
  uint32_t wlen[QS];
};

static void split_drv_init(struct split_drv *q) {
  for (uint32_t i = 0; i < QS; i++) {
    st16(q->desc + 16 * i + 14, (uint16_t)((i + 1) & QMASK));
    q->token[i] = -1;
  }
  q->free_head = 0;
  q->num_free = QS;
  q->avail_shadow = 0;
  q->last_used = 0;
  q->used_cache = 0;
}

/* Returns head or -1 when full. */
HOT int split_add(struct split_drv *q, const uint64_t *addr, const uint32_t *len, uint32_t n, uint32_t readable, int32_t token) {
  if (q->num_free < n) return -1;
  uint32_t head = q->free_head, i = head, last = head, wl = 0;
  for (uint32_t k = 0; k < n; k++) {
    uint8_t *e = q->desc + 16 * i;
    st64(e, addr[k]);
    st32(e + 8, len[k]);
    uint16_t f = (uint16_t)((k + 1 < n ? F_NEXT : 0) | (k >= readable ? F_WRITE : 0));
    st16(e + 12, f);
    if (k >= readable) wl += len[k];
    last = i;
    i = ld16(e + 14);
  }
  q->free_head = (uint16_t)i;
  q->num_free -= n;
  (void)last;
  q->token[head] = token;
  q->ndesc[head] = n;
  q->wlen[head] = wl;
  st16(q->avail + 4 + 2 * (q->avail_shadow & QMASK), (uint16_t)head);
  q->avail_shadow++;
  return (int)head;
}

HOT void split_publish(struct split_drv *q) { REL((uint16_t *)(q->avail + 2), q->avail_shadow); }

/* 1 = got one (token/len out), 0 = none, -1 = device error. */
HOT int split_get_used(struct split_drv *q, int32_t *token, uint32_t *len) {
  uint16_t lu = q->last_used;
  if (q->used_cache == lu) {
    uint16_t uidx = ACQ((uint16_t *)(q->used + 2));
    if (uidx == lu) return 0;
    if ((uint16_t)(uidx - lu) > QS) return fail("device used idx ahead");
    q->used_cache = uidx;
  }
  const uint8_t *e = q->used + 4 + 8 * (lu & QMASK);
  uint32_t id = ld32(e), l = ld32(e + 4);
  if (id >= QS || q->token[id] < 0) return fail("device returned a bad id");
  if (l > q->wlen[id]) return fail("device returned a bad length");
  /* free the chain onto the free list */
  uint32_t i = id, n = q->ndesc[id];
  for (uint32_t k = 1; k < n; k++) i = ld16(q->desc + 16 * i + 14);
  st16(q->desc + 16 * i + 14, q->free_head);
  q->free_head = (uint16_t)id;
  q->num_free += n;
  *token = q->token[id];
  *len = l;
  q->token[id] = -1;
  q->last_used = (uint16_t)(lu + 1);
  return 1;
}

/* ----------------------------------------------------------- packed device */

struct packed_dev {
  struct mem m;
  uint8_t *desc;
  uint16_t next_avail;
  uint16_t avail_wrap;
  uint16_t next_used;
  uint16_t used_wrap;
  uint16_t ndesc[QS]; /* descriptors per in-flight buffer id */
  int parked;
};

HOT int packed_pop(struct packed_dev *d, struct chain *c) {
  if (d->parked) return 0;
  uint32_t i = d->next_avail, wrap = d->avail_wrap;
  uint16_t f0 = ACQ((uint16_t *)(d->desc + 16 * i + 14));
  if (((f0 & F_AVAIL) != 0) != wrap || ((f0 & F_USED) != 0) == wrap) return 0;
  uint32_t n = 0, readable = 0, id = 0;
  for (;;) {
    if (n >= QS) { d->parked = 1; return fail("descriptor list longer than the queue size"); }
    const uint8_t *e = d->desc + 16 * i;
    uint64_t addr = ld64(e);
    uint32_t len = ld32(e + 8);
    uint32_t flags = ld16(e + 14);
    id = ld16(e + 12);
    if (flags & F_INDIRECT) { d->parked = 1; return fail("indirect not negotiated"); }
    uint8_t *p = gpa(&d->m, addr, len);
    if (!p) { d->parked = 1; return fail("buffer outside guest memory"); }
    if (!(flags & F_WRITE)) {
      if (readable != n) { d->parked = 1; return fail("readable after writable"); }
      readable++;
    }
    if (n >= MAX_SEGS) { d->parked = 1; return fail("chain too long for this device"); }
    c->ptr[n] = p;
    c->len[n] = len;
    n++;
    if (++i == QS) { i = 0; wrap ^= 1; }
    if (!(flags & F_NEXT)) break;
  }
  if (id >= QS) { d->parked = 1; return fail("buffer id out of range"); }
  d->ndesc[id] = (uint16_t)n;
  c->head = id;
  c->count = n;
  c->readable = readable;
  c->ndesc = n;
  d->next_avail = (uint16_t)i;
  d->avail_wrap = (uint16_t)wrap;
  return 1;
}

HOT void packed_push_batch(struct packed_dev *d, const uint32_t *heads, const uint32_t *lens, uint32_t n) {
  if (n == 0) return;
  uint32_t pos = d->next_used, wrap = d->used_wrap;
  uint32_t first = pos;
  uint16_t first_flags = 0;
  for (uint32_t k = 0; k < n; k++) {
    uint8_t *e = d->desc + 16 * pos;
    uint32_t id = heads[k];
    st16(e + 12, (uint16_t)id);
    st32(e + 8, lens[k]);
    uint16_t fl = (uint16_t)(F_WRITE | (wrap ? (F_AVAIL | F_USED) : 0));
    if (k == 0) first_flags = fl;
    else REL((uint16_t *)(e + 14), fl);
    pos += d->ndesc[id];
    if (pos >= QS) { pos -= QS; wrap ^= 1; }
  }
  /* the first used element last: the driver sees the whole batch at once */
  REL((uint16_t *)(d->desc + 16 * first + 14), first_flags);
  d->next_used = (uint16_t)pos;
  d->used_wrap = (uint16_t)wrap;
}

/* ----------------------------------------------------------- packed driver */

struct packed_drv {
  struct mem m;
  uint8_t *desc;
  uint16_t next_avail, avail_wrap;
  uint16_t next_used, used_wrap;
  uint32_t num_free;
  uint32_t free_ids[QS];
  uint32_t nfree_ids;
  int32_t token[QS];
  uint32_t ndesc[QS];
  uint32_t wlen[QS];
};

static void packed_drv_init(struct packed_drv *q) {
  q->next_avail = 0; q->avail_wrap = 1; q->next_used = 0; q->used_wrap = 1;
  q->num_free = QS;
  q->nfree_ids = QS;
  for (uint32_t i = 0; i < QS; i++) { q->free_ids[i] = QS - 1 - i; q->token[i] = -1; }
}

HOT int packed_add(struct packed_drv *q, const uint64_t *addr, const uint32_t *len, uint32_t n, uint32_t readable, int32_t token) {
  if (q->num_free < n || q->nfree_ids == 0) return -1;
  uint32_t id = q->free_ids[--q->nfree_ids];
  uint32_t pos = q->next_avail, wrap = q->avail_wrap, wl = 0;
  uint32_t head = pos;
  uint16_t head_flags = 0;
  for (uint32_t k = 0; k < n; k++) {
    uint8_t *e = q->desc + 16 * pos;
    st64(e, addr[k]);
    st32(e + 8, len[k]);
    st16(e + 12, (uint16_t)id);
    uint16_t f = (uint16_t)((k + 1 < n ? F_NEXT : 0) | (k >= readable ? F_WRITE : 0) | (wrap ? F_AVAIL : F_USED));
    if (k >= readable) wl += len[k];
    if (k == 0) head_flags = f;
    else st16(e + 14, f);
    if (++pos == QS) { pos = 0; wrap ^= 1; }
  }
  REL((uint16_t *)(q->desc + 16 * head + 14), head_flags);
  q->next_avail = (uint16_t)pos;
  q->avail_wrap = (uint16_t)wrap;
  q->num_free -= n;
  q->token[id] = token;
  q->ndesc[id] = n;
  q->wlen[id] = wl;
  return (int)id;
}

HOT int packed_get_used(struct packed_drv *q, int32_t *token, uint32_t *len) {
  uint32_t pos = q->next_used;
  const uint8_t *e = q->desc + 16 * pos;
  uint16_t f = ACQ((uint16_t *)(e + 14));
  uint32_t a = (f & F_AVAIL) != 0, u = (f & F_USED) != 0;
  if (a != u || u != q->used_wrap) return 0;
  uint32_t id = ld16(e + 12), l = ld32(e + 8);
  if (id >= QS || q->token[id] < 0) return fail("device returned a bad id");
  if (l > q->wlen[id]) return fail("device returned a bad length");
  pos += q->ndesc[id];
  if (pos >= QS) { pos -= QS; q->used_wrap ^= 1; }
  q->next_used = (uint16_t)pos;
  q->num_free += q->ndesc[id];
  q->free_ids[q->nfree_ids++] = id;
  *token = q->token[id];
  *len = l;
  q->token[id] = -1;
  return 1;
}

/* ---------------------------------------------------------------- workload */

struct bench {
  int packed;
  uint32_t descs;
  struct mem m;
  struct split_dev sdev;
  struct split_drv sdrv;
  struct packed_dev pdev;
  struct packed_drv pdrv;
  /* driver side token pool */
  uint32_t free_tok[QS];
  uint32_t nfree_tok;
  uint64_t checksum;
  uint64_t bad_status;
};

/* Device side: handle one chain, return the used length (or -1 on a bad request). */
HOT int64_t device_handle(struct bench *b, const struct chain *c, const uint32_t D) {
  if (D == 1) {
    if (c->count != 1 || c->readable != 0 || c->len[0] < 1) return fail("unexpected 1-descriptor request");
    c->ptr[0][0] = BLK_S_OK;
    return 1;
  }
  if (c->count != 3 || c->readable != 1 || c->len[0] < HDR_LEN || c->len[2] < 1) return fail("unexpected blk request layout");
  uint32_t type = ld32(c->ptr[0]);
  uint64_t sector = ld64(c->ptr[0] + 8);
  b->checksum += sector;
  c->ptr[2][0] = type == BLK_T_IN ? BLK_S_OK : BLK_S_UNSUPP;
  return (int64_t)c->len[1] + 1;
}

HOT int device_pop(struct bench *b, struct chain *c, const int P) {
  return P ? packed_pop(&b->pdev, c) : split_pop(&b->sdev, c);
}
HOT void device_push(struct bench *b, const uint32_t *h, const uint32_t *l, uint32_t n, const int P) {
  if (P) packed_push_batch(&b->pdev, h, l, n);
  else split_push_batch(&b->sdev, h, l, n);
}

/* Device: pop up to BATCH chains, handle, push used in one batch. Returns count or -1. */
HOT int device_batch(struct bench *b, const int P, const uint32_t D) {
  struct chain c;
  uint32_t heads[BATCH], lens[BATCH], n = 0;
  while (n < BATCH) {
    int r = device_pop(b, &c, P);
    if (r < 0) return -1;
    if (r == 0) break;
    int64_t l = device_handle(b, &c, D);
    if (l < 0) return -1;
    heads[n] = c.head;
    lens[n] = (uint32_t)l;
    n++;
  }
  device_push(b, heads, lens, n, P);
  return (int)n;
}

static uint64_t g_seq = 0;

/* Driver: post up to `max` chains; returns how many were posted (publish included). */
HOT int driver_post(struct bench *b, uint32_t max, const int P, const uint32_t D) {
  uint64_t addr[3];
  uint32_t len[3];
  uint32_t posted = 0;
  uint8_t *mem = b->m.p;
  /* Room first, as a driver does: nothing is prepared for a chain that cannot be added. */
  uint32_t room = (P ? b->pdrv.num_free : b->sdrv.num_free) / D;
  if (max > room) max = room;
  while (posted < max && b->nfree_tok > 0) {
    uint32_t t = b->free_tok[b->nfree_tok - 1];
    int r;
    if (D == 1) {
      uint32_t off = BUF1_OFF + BUF1_LEN * t;
      mem[off] = 0xff;
      addr[0] = GPA_BASE + off;
      len[0] = BUF1_LEN;
      r = P ? packed_add(&b->pdrv, addr, len, 1, 0, (int32_t)t) : split_add(&b->sdrv, addr, len, 1, 0, (int32_t)t);
    } else {
      uint8_t *h = mem + HDR_OFF + HDR_LEN * t;
      st32(h, BLK_T_IN);
      st32(h + 4, 0);
      st64(h + 8, g_seq++);
      mem[STATUS_OFF + t] = 0xff;
      addr[0] = GPA_BASE + HDR_OFF + HDR_LEN * t; len[0] = HDR_LEN;
      addr[1] = GPA_BASE + DATA_OFF + (uint64_t)DATA_LEN * t; len[1] = DATA_LEN;
      addr[2] = GPA_BASE + STATUS_OFF + t; len[2] = 1;
      r = P ? packed_add(&b->pdrv, addr, len, 3, 1, (int32_t)t) : split_add(&b->sdrv, addr, len, 3, 1, (int32_t)t);
    }
    if (r < 0) break;
    b->nfree_tok--;
    posted++;
  }
  if (posted && !P) split_publish(&b->sdrv);
  return (int)posted;
}

/* Driver: reclaim all used chains; returns count or -1. */
HOT int driver_reclaim(struct bench *b, const int P, const uint32_t D) {
  int32_t tok;
  uint32_t len;
  int got = 0;
  const uint8_t *mem = b->m.p;
  for (;;) {
    int r = P ? packed_get_used(&b->pdrv, &tok, &len) : split_get_used(&b->sdrv, &tok, &len);
    if (r < 0) return -1;
    if (r == 0) break;
    uint8_t st = D == 1 ? mem[BUF1_OFF + BUF1_LEN * (uint32_t)tok] : mem[STATUS_OFF + (uint32_t)tok];
    if (st != BLK_S_OK) b->bad_status++;
    b->free_tok[b->nfree_tok++] = (uint32_t)tok;
    got++;
  }
  return got;
}

static void bench_init(struct bench *b, int packed, uint32_t descs) {
  memset(b, 0, sizeof *b);
  b->packed = packed;
  b->descs = descs;
  uint8_t *p = aligned_alloc(4096, MEM_SIZE);
  if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
  memset(p, 0, MEM_SIZE);
  b->m.p = p;
  b->m.base = GPA_BASE;
  b->m.size = MEM_SIZE;
  if (packed) {
    b->pdev.m = b->m; b->pdev.desc = p + DESC_OFF;
    b->pdev.next_avail = 0; b->pdev.avail_wrap = 1; b->pdev.next_used = 0; b->pdev.used_wrap = 1;
    b->pdrv.m = b->m; b->pdrv.desc = p + DESC_OFF;
    packed_drv_init(&b->pdrv);
  } else {
    b->sdev.m = b->m; b->sdev.desc = p + DESC_OFF; b->sdev.avail = p + DRIVER_OFF; b->sdev.used = p + DEVICE_OFF;
    b->sdrv.m = b->m; b->sdrv.desc = p + DESC_OFF; b->sdrv.avail = p + DRIVER_OFF; b->sdrv.used = p + DEVICE_OFF;
    split_drv_init(&b->sdrv);
  }
  b->nfree_tok = QS;
  for (uint32_t i = 0; i < QS; i++) b->free_tok[i] = QS - 1 - i;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ single thread */

/* Runs for `secs`; returns chains completed (or -1), elapsed in *el. */
HOT int64_t run_single(struct bench *b, double secs, double *el, const int P, const uint32_t D) {
  int64_t done = 0;
  double t0 = now_s(), t;
  for (;;) {
    for (int k = 0; k < 16; k++) {
      if (driver_post(b, BATCH, P, D) != (int)BATCH) { fail("driver could not post a full batch"); return -1; }
      int n = device_batch(b, P, D);
      if (n != (int)BATCH) { if (n >= 0) fail("device popped a short batch"); return -1; }
      int r = driver_reclaim(b, P, D);
      if (r != (int)BATCH) { if (r >= 0) fail("driver reclaimed a short batch"); return -1; }
      done += r;
    }
    t = now_s();
    if (t - t0 >= secs) break;
  }
  *el = t - t0;
  return done;
}

/* -------------------------------------------------------------- two threads */

struct shared {
  _Alignas(64) uint32_t notify; /* driver -> device: bumped after each publish */
  _Alignas(64) uint32_t irq;    /* device -> driver: bumped after each used batch */
  _Alignas(64) uint32_t stop;   /* driver -> device: leave the loop */
  _Alignas(64) uint32_t dev_state; /* device -> driver: 1 running, 2 exited ok, 3 error, 4 timeout */
  _Alignas(64) uint32_t epoch;  /* driver -> device (--sides): bumped when a measurement phase starts */
  _Alignas(64) double dev_ns;   /* device only (--sides): busy ns and chains of the current epoch */
  double dev_chains;
};

/* --sides: time the busy calls of each side (two agents). */
static int g_sides = 0;
static double g_post_ns, g_post_chains, g_recl_ns, g_recl_chains, g_dev_ns, g_dev_chains;
static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

struct dev_arg {
  struct bench *b;
  struct shared *s;
  double timeout;
};

HOT void device_loop(struct dev_arg *a, const int P, const uint32_t D) {
  struct bench *b = a->b;
  struct shared *s = a->s;
  uint32_t seen = 0, irq = 0, epoch = 0;
  REL(&s->dev_state, 1);
  double last_progress = now_s();
  uint32_t spins = 0;
  for (;;) {
    uint32_t nt = ACQ(&s->notify);
    if (nt == seen) {
      if (++spins < 1024) continue;
      spins = 0;
      if (ACQ(&s->stop)) { REL(&s->dev_state, 2); return; }
      if (now_s() - last_progress > a->timeout) { REL(&s->dev_state, 4); return; }
      continue;
    }
    seen = nt;
    for (;;) {
      int n;
      if (g_sides) {
        uint32_t ep = ACQ(&s->epoch);
        if (ep != epoch) { epoch = ep; s->dev_ns = 0; s->dev_chains = 0; }
        double c0 = now_ns();
        n = device_batch(b, P, D);
        if (n > 0) { s->dev_ns += now_ns() - c0; s->dev_chains += n; }
      } else {
        n = device_batch(b, P, D);
      }
      if (n < 0) { REL(&s->dev_state, 3); return; }
      if (n == 0) break;
      REL(&s->irq, ++irq);
      if (n < (int)BATCH) break;
    }
    last_progress = now_s();
  }
}

static void *device_thread(void *arg) {
  struct dev_arg *a = arg;
  switch (a->b->packed * 4 + (int)a->b->descs) {
    case 1: device_loop(a, 0, 1); break;
    case 3: device_loop(a, 0, 3); break;
    case 5: device_loop(a, 1, 1); break;
    default: device_loop(a, 1, 3); break;
  }
  return NULL;
}

/* Driver side of one two-thread measurement; device thread already running. */
HOT int64_t run_two(struct bench *b, struct shared *s, double secs, double timeout, double *el, const int P, const uint32_t D) {
  int64_t done = 0;
  uint32_t seen = ACQ(&s->irq);
  uint32_t notify = ACQ(&s->notify);
  double t0 = now_s(), t = t0, last_progress = t0;
  int posting = 1;
  uint32_t spins = 0;
  uint32_t inflight = 0;
  for (;;) {
    if (posting) {
      double c0 = g_sides ? now_ns() : 0;
      int p = driver_post(b, BATCH, P, D);
      if (p > 0) {
        if (g_sides) { g_post_ns += now_ns() - c0; g_post_chains += p; }
        inflight += (uint32_t)p;
        REL(&s->notify, ++notify);
      }
    }
    uint32_t ir = ACQ(&s->irq);
    if (ir != seen) {
      seen = ir;
      double c0 = g_sides ? now_ns() : 0;
      int r = driver_reclaim(b, P, D);
      if (r < 0) return -1;
      if (g_sides && r > 0) { g_recl_ns += now_ns() - c0; g_recl_chains += r; }
      done += r;
      inflight -= (uint32_t)r;
      spins = 0;
      t = now_s();
      last_progress = t;
      if (posting && t - t0 >= secs) posting = 0;
      if (!posting && inflight == 0) break;
      continue;
    }
    if (++spins >= 1024) {
      spins = 0;
      t = now_s();
      if (ACQ(&s->dev_state) >= 3) { fail("device thread failed"); return -1; }
      if (t - last_progress > timeout) { fail("timeout: device made no progress"); return -2; }
      if (posting && t - t0 >= secs) posting = 0;
      if (!posting && inflight == 0) break;
    }
  }
  *el = t - t0;
  return done;
}

static int64_t single(struct bench *b, double secs, double *el) {
  switch (b->packed * 4 + (int)b->descs) {
    case 1: return run_single(b, secs, el, 0, 1);
    case 3: return run_single(b, secs, el, 0, 3);
    case 5: return run_single(b, secs, el, 1, 1);
    default: return run_single(b, secs, el, 1, 3);
  }
}

static int64_t two(struct bench *b, struct shared *s, double secs, double timeout, double *el) {
  switch (b->packed * 4 + (int)b->descs) {
    case 1: return run_two(b, s, secs, timeout, el, 0, 1);
    case 3: return run_two(b, s, secs, timeout, el, 0, 3);
    case 5: return run_two(b, s, secs, timeout, el, 1, 1);
    default: return run_two(b, s, secs, timeout, el, 1, 3);
  }
}

/* -------------------------------------------------------------------- main */

static void usage(void) {
  fprintf(stderr, "usage: queue_bench --ring split|packed --descs 1|3 --agents 1|2 [--ms N] [--warmup-ms N] [--reps N] [--timeout-ms N] [--sides 0|1]\n");
}

int main(int argc, char **argv) {
  int packed = -1, agents = 0;
  uint32_t descs = 0;
  double ms = 200, warm = 100, timeout_ms = 5000;
  int reps = 3;
  int sides = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) { usage(); return 2; }
    if (!strcmp(a, "--ring")) { packed = !strcmp(v, "packed") ? 1 : !strcmp(v, "split") ? 0 : -2; }
    else if (!strcmp(a, "--descs")) descs = (uint32_t)atoi(v);
    else if (!strcmp(a, "--agents")) agents = atoi(v);
    else if (!strcmp(a, "--ms")) ms = atof(v);
    else if (!strcmp(a, "--warmup-ms")) warm = atof(v);
    else if (!strcmp(a, "--reps")) reps = atoi(v);
    else if (!strcmp(a, "--timeout-ms")) timeout_ms = atof(v);
    else if (!strcmp(a, "--sides")) sides = !strcmp(v, "1") ? 1 : !strcmp(v, "0") ? 0 : -1;
    else { usage(); return 2; }
    i++;
  }
  if (packed < 0 || (descs != 1 && descs != 3) || (agents != 1 && agents != 2) || reps < 1 || reps > 100 || !(ms > 0) || !(warm >= 0) || !(timeout_ms > 0) || sides < 0 || (sides && agents != 2)) {
    usage();
    return 2;
  }
  struct bench *b = malloc(sizeof *b);
  if (!b) return 1;
  bench_init(b, packed, descs);
  double res[100];
  int64_t total = 0;
  double timeout = timeout_ms / 1000.0;
  int rc = 0;
  if (agents == 1) {
    double el;
    if (warm > 0 && single(b, warm / 1000.0, &el) < 0) rc = 4;
    for (int r = 0; r < reps && rc == 0; r++) {
      int64_t n = single(b, ms / 1000.0, &el);
      if (n < 0) { rc = 4; break; }
      total += n;
      res[r] = (double)n / el / 1e6;
    }
  } else {
    struct shared *s = aligned_alloc(64, sizeof(struct shared));
    memset(s, 0, sizeof *s);
    g_sides = sides;
    s->epoch = 1; /* warm-up */
    struct dev_arg da = { b, s, timeout };
    pthread_t th;
    if (pthread_create(&th, NULL, device_thread, &da) != 0) { fprintf(stderr, "pthread_create failed\n"); return 1; }
    double el;
    if (warm > 0) {
      int64_t n = two(b, s, warm / 1000.0, timeout, &el);
      if (n < 0) rc = n == -2 ? 3 : 4;
    }
    /* Timed repetitions: a new epoch (the device zeroes its sums) and zeroed driver sums. */
    REL(&s->epoch, 2);
    g_post_ns = g_post_chains = g_recl_ns = g_recl_chains = 0;
    for (int r = 0; r < reps && rc == 0; r++) {
      int64_t n = two(b, s, ms / 1000.0, timeout, &el);
      if (n < 0) { rc = n == -2 ? 3 : 4; break; }
      total += n;
      res[r] = (double)n / el / 1e6;
    }
    REL(&s->stop, 1);
    pthread_join(th, NULL);
    g_dev_ns = s->dev_ns;
    g_dev_chains = s->dev_chains;
    uint32_t ds = ACQ(&s->dev_state);
    if (rc == 0 && ds == 4) { fail("timeout: driver made no progress"); rc = 3; }
    if (rc == 0 && ds == 3) rc = 4;
  }
  if (rc == 0 && b->bad_status) { fail("status byte not written by the device"); rc = 4; }
  if (rc != 0) {
    printf("{\"ok\":false,\"error\":\"%s\"}\n", g_error ? g_error : "unknown error");
    return rc;
  }
  printf("{\"ok\":true,\"ring\":\"%s\",\"descs\":%u,\"agents\":%d,\"chains\":%lld,\"checksum\":%llu,\"mchains_per_s\":[",
         packed ? "packed" : "split", descs, agents, (long long)total, (unsigned long long)b->checksum);
  for (int r = 0; r < reps; r++) printf("%s%.4f", r ? "," : "", res[r]);
  printf("]");
  if (sides && g_post_chains > 0 && g_recl_chains > 0 && g_dev_chains > 0)
    printf(",\"sides\":{\"post_ns\":%.2f,\"reclaim_ns\":%.2f,\"device_ns\":%.2f}", g_post_ns / g_post_chains, g_recl_ns / g_recl_chains, g_dev_ns / g_dev_chains);
  printf("}\n");
  return 0;
}
