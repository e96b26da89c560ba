/** Small statistics helpers for benchmark reports. */

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median, minimum and maximum. */
export interface Summary {
  median: number;
  min: number;
  max: number;
}

/** Summarise a non-empty list. */
export function summarize(values: readonly number[]): Summary {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** Best (largest) value: the least disturbed repetition on a shared machine. */
export function best(values: readonly number[]): number {
  return Math.max(...values);
}
