/** The JSON report of `virtiokit bench dma` (schema `virtiokit-bench-dma/1`). */
import type { ProfileSummary } from './cpuprof.js';
import type { NegotiatedInfo } from './session.js';
import type { Dimension, ModelName, Op, PointMeasure, RingKind } from './scenario.js';

/** One measured scenario, medians over rounds (ratios: per-round ratio, then the median). */
export interface DmaRow {
  key: string;
  model: ModelName;
  ring: RingKind;
  indirect: boolean;
  event_idx: boolean;
  queues: number;
  size: number;
  depth: number;
  op: Op;
  batch: boolean;
  /** Rounds that measured this row. */
  rounds: number;
  iops: number;
  iops_min: number;
  iops_max: number;
  mbps: number;
  p50_us: number;
  p99_us: number;
  mean_us: number;
  /** IOPS / IOPS of the direct-DMA counterpart with the same process boundary (vfio-user: `direct`; in-process: `inproc`). */
  ratio_vs_direct: number | null;
  /** IOPS / IOPS of the in-process baseline. */
  ratio_vs_inproc: number | null;
  /** CPU µs per request of the benchmark process (driver + VMM; + device for in-process models). */
  cpu_us_per_req_vmm: number;
  /** CPU µs per request of the device process (null: the device runs in the benchmark process). */
  cpu_us_per_req_device: number | null;
  /** Bounce-pool bytes copied per request (to + from device). */
  bounce_bytes_per_req: number;
  /** DMA_READ / DMA_WRITE data bytes per request and messages per request. */
  message_bytes_per_req: number;
  messages_per_req: number;
  /** bounce + message bytes. */
  bytes_copied_per_req: number;
  kicks_per_req: number;
  interrupts_per_req: number;
  peak_rss_vmm_bytes: number | null;
  peak_rss_device_bytes: number | null;
  /** True when the RSS high-water mark was reset before the point (else lifetime peak). */
  peak_rss_per_point: boolean;
  bounce_pool_high_water_bytes: number | null;
  requests_per_round: number;
  negotiated: NegotiatedInfo;
  per_round: Array<{ round: number; iops: number; p50_us: number; p99_us: number }>;
}

/** One-dimension comparison. */
export interface DmaComparison {
  dimension: Dimension;
  from: string | number | boolean;
  to: string | number | boolean;
  /** Every other dimension, held. */
  held: Record<string, string | number | boolean>;
  from_key: string;
  to_key: string;
  /** Median over rounds of (to IOPS / from IOPS) within each round. */
  iops_ratio: number;
  p50_ratio: number;
  cpu_ratio: number;
}

/** Copy bandwidth at one size. */
export interface CopyRow {
  size: number;
  pool_gbps: number;
  copybatch_gbps: number;
  c_memcpy_gbps: number;
  /** Median over rounds of pool / C within each round. */
  pool_vs_c: number;
  pool_vs_c_min: number;
  pool_vs_c_max: number;
  copybatch_vs_c: number;
}

/** A target read from the ratios. */
export interface TargetResult {
  id: string;
  description: string;
  target: number;
  measured: number | null;
  met: boolean;
  /** How it was measured / why it is missed. */
  note: string;
  where_time_goes?: ProfileSummary[];
}

export interface DmaBenchReport {
  schema: 'virtiokit-bench-dma/1';
  started: string;
  finished: string;
  preset: string;
  rounds: number;
  measure: PointMeasure;
  machine: {
    cpu: string;
    cores: number;
    node: string;
    platform: string;
    kernel: string;
    total_mem_bytes: number;
    loadavg_per_round: Array<{ round: number; before: number[]; after: number[] }>;
  };
  compiler: { command: string; version: string; flags: string[] } | null;
  models: Array<{ model: ModelName; description: string; measured: boolean; reason?: string; info?: Record<string, string | number | boolean> }>;
  rows: DmaRow[];
  comparisons: DmaComparison[];
  copy: CopyRow[];
  /** Bounce-pool copy GB/s / C memcpy GB/s, per size (median of same-round ratios). */
  memcpy_ratio_vs_c: Record<string, number> | null;
  /**
   * virtiokit's vhost-user-blk back-end / qemu-storage-daemon IOPS behind the same front-end
   * (`vhost-ours` / `vhost-qsd`, split ring, 1 queue, 4 KiB reads, depth 32): the ratio within each
   * round, then the median. Null when either model was not measured (e.g. qemu-storage-daemon
   * not installed).
   */
  vhost_user_vs_qsd: number | null;
  targets: TargetResult[];
  failures: Array<{ round: number; model?: ModelName; what: string; error: string }>;
}
