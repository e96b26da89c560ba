/**
 * Builds / refreshes the clause index in spec/clauses/<area>.json from the shared
 * normative-statement data (../shared/spec/normative.json and swiotlb-rfc.json).
 *
 * Facts (id, role, level, chapter, section number and title, legacy flag) are taken from
 * the shared data; the `summary` of each entry is our own paraphrase and is preserved
 * across runs. Summaries can be merged in from a tab-separated file (`id<TAB>summary`
 * per line) with `--summaries FILE`.
 *
 * Usage: node --import tsx scripts/gen-clauses.ts [--shared DIR] [--summaries FILE.tsv]... [--check]
 *   --check  write nothing; exit 1 when an entry would change or a summary is missing.
 */
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Statement {
  id: string;
  role: string;
  level: string;
  chapter?: string;
  section?: string;
  section_number?: string;
  legacy?: boolean;
  source?: string;
}

interface Entry {
  id: string;
  area: string;
  role: string;
  level: string;
  chapter: string;
  section_number: string | null;
  section: string;
  legacy: boolean;
  inScope: boolean;
  summary: string;
}

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
let shared = resolve(repo, '..', 'shared', 'spec');
const tsvs: string[] = [];
let check = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--shared') shared = resolve(args[++i] ?? '');
  else if (a === '--summaries') tsvs.push(resolve(args[++i] ?? ''));
  else if (a === '--check') check = true;
  else {
    console.error(`unknown argument ${a}; usage: gen-clauses.ts [--shared DIR] [--summaries FILE.tsv]... [--check]`);
    process.exit(2);
  }
}

const outDir = join(repo, 'spec', 'clauses');
/** Areas that virtiokit does not implement (indexed, but excluded from coverage figures). */
const OUT_OF_SCOPE = new Set(['vsock']);

/** Chapter title as used in the index: second-level heading for transports and device types. */
function chapterOf(s: Statement): string {
  const path = (s.section ?? '').split(' / ');
  if ((s.chapter === 'Device Types' || s.chapter === 'Virtio Transport Options') && path.length > 1) return path[1]!;
  return s.chapter ?? '';
}

// Existing summaries (preserved).
const summaries = new Map<string, string>();
if (existsSync(outDir)) {
  for (const f of readdirSync(outDir)) {
    if (!f.endsWith('.json')) continue;
    const list = JSON.parse(readFileSync(join(outDir, f), 'utf8')) as Entry[];
    for (const e of list) if (e.summary) summaries.set(e.id, e.summary);
  }
}
for (const t of tsvs) {
  for (const line of readFileSync(t, 'utf8').split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const tab = line.indexOf('\t');
    if (tab < 0) throw new Error(`${t}: line without a tab: ${line}`);
    summaries.set(line.slice(0, tab).trim(), line.slice(tab + 1).trim());
  }
}

const normative = JSON.parse(readFileSync(join(shared, 'normative.json'), 'utf8')) as Statement[];
const rfc = JSON.parse(readFileSync(join(shared, 'swiotlb-rfc.json'), 'utf8')) as Statement[];

const byArea = new Map<string, Entry[]>();
function add(e: Entry): void {
  let l = byArea.get(e.area);
  if (!l) byArea.set(e.area, (l = []));
  l.push(e);
}
for (const s of normative) {
  const area = s.id.split('.')[0]!;
  const path = (s.section ?? '').split(' / ');
  add({
    id: s.id,
    area,
    role: s.role,
    level: s.level,
    chapter: chapterOf(s),
    section_number: s.section_number ?? null,
    section: path[path.length - 1] ?? '',
    legacy: s.legacy === true,
    inScope: !OUT_OF_SCOPE.has(area),
    summary: summaries.get(s.id) ?? '',
  });
}
const RFC_SECTION: Record<string, string> = {
  feature: 'Reserved Feature Bits: VIRTIO_F_SWIOTLB',
  'access-platform': 'Reserved Feature Bits: VIRTIO_F_ACCESS_PLATFORM',
  pci: 'Virtio Over PCI Bus: Software IOTLB bounce buffer capability',
  mmio: 'Virtio Over MMIO: Software IOTLB bounce buffer',
};
for (const s of rfc) {
  const sub = s.id.split('.')[1]!;
  add({
    id: s.id,
    area: 'rfc-swiotlb',
    role: s.role,
    level: s.level,
    chapter: 'VIRTIO_F_SWIOTLB RFC (2025)',
    section_number: null,
    section: RFC_SECTION[sub] ?? sub,
    legacy: false,
    inScope: true,
    summary: summaries.get(s.id) ?? '',
  });
}

let missing = 0;
let changed = 0;
for (const [area, list] of byArea) {
  const text = '[\n' + list.map((e) => '  ' + JSON.stringify(e)).join(',\n') + '\n]\n';
  const file = join(outDir, `${area}.json`);
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (old !== text) changed++;
  missing += list.filter((e) => !e.summary).length;
  if (!check) writeFileSync(file, text);
  console.log(`${area.padEnd(12)} ${String(list.length).padStart(4)} entries, ${list.filter((e) => !e.summary).length} without summary`);
}
console.log(`${check ? 'would change' : 'wrote'} ${changed} file(s); ${missing} summaries missing`);
if (check && (changed > 0 || missing > 0)) process.exit(1);
