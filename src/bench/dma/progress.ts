/**
 * Progress output: a redrawn bar on a terminal, plain lines otherwise (CI logs, pipes). On a
 * non-TTY only `note` lines and every 10 % step are printed.
 */

/** Where progress goes. */
export interface ProgressSink {
  write(text: string): void;
  readonly isTTY: boolean;
}

/** A progress reporter over `total` units. */
export class Progress {
  private done = 0;
  private lastPct = -1;
  private lastLen = 0;
  private readonly t0 = Date.now();

  constructor(
    private readonly sink: ProgressSink,
    private total: number,
  ) {}

  /** Grow the total (e.g. profile runs added at the end). */
  addTotal(n: number): void {
    this.total += n;
  }

  /** Advance by `n` units; `label` says what is running. */
  tick(n: number, label: string): void {
    this.done = Math.min(this.total, this.done + n);
    const pct = this.total > 0 ? Math.floor((100 * this.done) / this.total) : 100;
    const secs = ((Date.now() - this.t0) / 1000).toFixed(0);
    if (this.sink.isTTY) {
      const w = 30;
      const fill = Math.round((w * pct) / 100);
      const line = `[${'#'.repeat(fill)}${'-'.repeat(w - fill)}] ${String(pct).padStart(3)}% ${secs}s ${label}`;
      this.sink.write(`\r${line}${' '.repeat(Math.max(0, this.lastLen - line.length))}`);
      this.lastLen = line.length;
    } else if (Math.floor(pct / 10) !== Math.floor(this.lastPct / 10)) {
      this.sink.write(`progress ${pct}% (${this.done}/${this.total}, ${secs}s) ${label}\n`);
    }
    this.lastPct = pct;
  }

  /** A message on its own line. */
  note(text: string): void {
    if (this.sink.isTTY && this.lastLen > 0) {
      this.sink.write(`\r${' '.repeat(this.lastLen)}\r`);
      this.lastLen = 0;
    }
    this.sink.write(`${text}\n`);
  }

  /** Finish the bar. */
  end(): void {
    if (this.sink.isTTY && this.lastLen > 0) this.sink.write('\n');
    this.lastLen = 0;
  }
}
