/**
 * The contract of the native addon (`native/`), as seen from TypeScript.
 *
 * `src/native/index.ts` loads `build/Release/virtiokit.node` and returns an object of this type,
 * or — when the addon cannot be loaded — a pure-JavaScript fallback that works in one process on
 * plain ArrayBuffers (memfd, mmap, eventfd and fd passing then throw NATIVE_UNAVAILABLE).
 * Nothing else in virtiokit imports native code.
 *
 * Every function validates its arguments and throws a {@link VirtioError} (code INVALID_ARGUMENT,
 * NATIVE_ERROR with errno, or CLOSED) — never crashes the process.
 */

/** Readiness bits for {@link NativeApi.poll}. */
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

/** A running fd watch. */
export interface PollHandle {
  /** Stop watching (idempotent). */
  stop(): void;
  /** Let the watch keep the event loop (process / worker) alive — the default while active. */
  ref(): void;
  /** Do not let this watch alone keep the event loop alive (callbacks still run while it is). */
  unref(): void;
  /** True until {@link stop} (or close(fd) of the watched fd through the addon). */
  readonly active: boolean;
  /** The watched fd. */
  readonly fd: number;
}

/** Result of {@link NativeApi.recvmsg}. */
export interface RecvResult {
  /** Bytes received; 0 means the peer closed the connection. */
  bytes: number;
  /** File descriptors received (SCM_RIGHTS), already owned by the caller (close them). */
  fds: number[];
}

export interface NativeApi {
  /** True when the real addon is loaded; false for the pure-JS fallback. */
  readonly available: boolean;
  /** Why the addon is not available (undefined when it is). */
  readonly unavailableReason: string | undefined;
  /** Absolute path of the loaded `.node` file (undefined for the fallback). */
  readonly addonPath: string | undefined;
  /** System page size (mmap offsets must be multiples of it); 4096 in the fallback. */
  readonly pageSize: number;

  // --- shared memory
  /** memfd_create(name, MFD_CLOEXEC) + ftruncate(size). Returns the fd. */
  memfdCreate(name: string, size: number): number;
  /**
   * mmap(fd, offset, length) MAP_SHARED into an external ArrayBuffer (length ≤ 4 GiB, offset page
   * aligned). Unmapped exactly once: by {@link munmap} or by the garbage collector.
   * `writable=false` gives a private copy-on-write mapping: JS can still store into it (V8 has no
   * read-only ArrayBuffers, and a PROT_READ page would crash the process on a stray store), but such
   * stores never reach the fd. Enforce read-only access with a read-only MemoryRegion.
   */
  mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer;
  /** Unmap a buffer from {@link mmap} now (second call: no-op). Views over it must not be used afterwards. */
  munmap(buf: ArrayBuffer): void;
  /** True while `buf` is a live mapping made by {@link mmap}. */
  isMapped(buf: ArrayBuffer): boolean;

  // --- copies
  /** Copy `len` bytes from src[srcOff..] to dst[dstOff..] (memmove semantics; bounds checked). */
  copy(dst: ArrayBufferLike, dstOff: number, src: ArrayBufferLike, srcOff: number, len: number): void;
  /**
   * Batched scatter-gather copy: `ops` holds `count` records of 5 numbers
   * `[dstIndex, dstOff, srcIndex, srcOff, len]` indexing `bufs`. All records are bounds-checked
   * before any byte is copied. Returns total bytes copied.
   */
  copyBatch(bufs: ArrayBufferLike[], ops: Float64Array, count: number): number;

  // --- fds
  /** eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK). */
  eventfdCreate(initval?: number): number;
  /**
   * Read and reset the counter; returns 0 when it was 0 (EAGAIN). The fd must be non-blocking (as
   * {@link eventfdCreate}'s are) or known readable (after {@link poll} reported it), else it blocks.
   */
  eventfdRead(fd: number): number;
  /** Add `value` (default 1) to the counter. */
  eventfdWrite(fd: number, value?: number): void;
  /** close(fd). */
  close(fd: number): void;
  /** dup(fd) with CLOEXEC. */
  dup(fd: number): number;
  /** fstat size of an fd (bytes). */
  fdSize(fd: number): number;

  // --- UNIX sockets with fd passing (all non-blocking, CLOEXEC)
  /** socketpair(AF_UNIX, SOCK_STREAM). */
  socketpair(): [number, number];
  /** socket + bind + listen on a filesystem path (an existing socket file is replaced). */
  listenUnix(path: string): number;
  /** accept4; returns -1 when no connection is pending (EAGAIN). */
  accept(fd: number): number;
  /** connect to a filesystem path (blocking connect, then non-blocking fd). */
  connectUnix(path: string): number;
  /** sendmsg with optional SCM_RIGHTS fds. Returns bytes sent; -1 on EAGAIN. */
  sendmsg(fd: number, data: Uint8Array, fds?: number[]): number;
  /** recvmsg into `buf` (up to `maxFds` fds). Returns null on EAGAIN. */
  recvmsg(fd: number, buf: Uint8Array, maxFds?: number): RecvResult | null;

  // --- event-loop integration
  /**
   * Watch `fd` for readiness through libuv (never blocks the event loop, never spins).
   * `cb(events, errno)` runs on the main thread for each readiness change.
   */
  poll(fd: number, events: number, cb: (events: number, errno: number) => void): PollHandle;
}
