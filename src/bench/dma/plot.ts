/**
 * The SVG plot: throughput (MB/s) vs request size, one line per DMA model, log-log, for the model
 * sweep (split ring, 1 queue, depth 32, reads, batched kicks). Rendered headless with vega-lite →
 * vega `View.toSVG()` (no browser, no canvas).
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { DmaBenchReport } from './report-types.js';
import { BASE_DRIVER, BASE_POINT, MODEL_NAMES } from './scenario.js';

/** Render the plot of `rep` as an SVG document. */
export async function renderThroughputSvg(rep: DmaBenchReport): Promise<string> {
  const values = rep.rows
    .filter((r) => r.ring === BASE_DRIVER.ring && r.indirect === BASE_DRIVER.indirect && r.event_idx === BASE_DRIVER.eventIdx && r.queues === BASE_DRIVER.queues && r.depth === BASE_POINT.depth && r.op === BASE_POINT.op && r.batch === BASE_POINT.batch && r.mbps > 0)
    .map((r) => ({ model: r.model, size: r.size, mbps: r.mbps, order: MODEL_NAMES.indexOf(r.model) }))
    .sort((a, b) => a.order - b.order || a.size - b.size);
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'virtio-blk throughput vs request size (RAM disk, reads, depth 32)', subtitle: `${rep.preset}, median of ${rep.rounds} round(s); ${rep.machine.cpu}, ${rep.machine.cores} cores` },
    width: 560,
    height: 340,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'size', type: 'quantitative', title: 'request size (bytes)', scale: { type: 'log', base: 2 }, axis: { values: [...new Set(values.map((v) => v.size))], labelExpr: "datum.value >= 1024 ? (datum.value / 1024) + ' KiB' : datum.value + ' B'" } },
      y: { field: 'mbps', type: 'quantitative', title: 'throughput (MB/s, log)', scale: { type: 'log' } },
      color: { field: 'model', type: 'nominal', title: 'DMA model', sort: [...MODEL_NAMES] },
      tooltip: [{ field: 'model' }, { field: 'size' }, { field: 'mbps', format: '.0f' }],
    },
  };
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
