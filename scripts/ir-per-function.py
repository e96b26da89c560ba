"""Attribute callgrind instruction counts (--dump-instr=yes) to V8 JIT functions (perf map).

Usage: ir-per-function.py DIR UNITS  (DIR holds cg.2000, cg.6000, map.2000, map.6000)
Prints (Ir(6000) - Ir(2000)) / UNITS per function, largest first; IRFN_SIZES=1 adds each code
object's size (several optimised versions of one function, e.g. OSR, show separately).
"""
import bisect
import collections
import re
import os
import sys

SIZES = os.environ.get('IRFN_SIZES') == '1'


def load(d, n):
    ranges = []
    for line in open(f'{d}/map.{n}'):
        p = line.split(' ', 2)
        if len(p) == 3:
            ranges.append((int(p[0], 16), int(p[1], 16), p[2].strip()))
    ranges.sort()
    starts = [r[0] for r in ranges]
    cost = collections.Counter()
    names = {}
    cur = '?'
    addr = 0
    skip = False

    def step(a):
        nonlocal addr
        if a.startswith('0x'):
            addr = int(a, 16)
        elif a.startswith('+'):
            addr += int(a[1:], 16) if a[1:].startswith('0x') else int(a[1:])
        elif a.startswith('-'):
            addr -= int(a[1:], 16) if a[1:].startswith('0x') else int(a[1:])

    for line in open(f'{d}/cg.{n}'):
        if line.startswith('fn='):
            m = re.match(r'fn=\((\d+)\)(?: (.*))?', line.strip())
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                cur = names.get(m.group(1), '?')
            continue
        if line.startswith('calls='):
            skip = True
            continue
        if not line or line[0] not in '0123456789+-*x':
            continue
        p = line.split()
        step(p[0])
        if skip:  # the inclusive cost line of a call: not this function's own instructions
            skip = False
            continue
        if len(p) < 2:
            continue
        try:
            c = int(p[2]) if len(p) > 2 else int(p[1])
        except ValueError:
            continue
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < ranges[i][0] + ranges[i][1]:
            name = re.sub(r'file:///\S*/', '', re.sub(r'\s+', ' ', ranges[i][2]))
            if SIZES:  # tell apart several code objects of one function (e.g. regular and OSR)
                name += f' [{ranges[i][1]} bytes]'
        else:
            name = '(native) ' + cur[:70]
        cost[name] += c
    return cost


def main():
    d, units = sys.argv[1], int(sys.argv[2])
    c1, c2 = load(d, 2000), load(d, 6000)
    rows = sorted(((k, (c2[k] - c1.get(k, 0)) / units) for k in c2), key=lambda r: -r[1])
    js = sum(v for k, v in rows if not k.startswith('(native)'))
    print(f'JS total {js:.0f} Ir per unit')
    for k, v in rows[:20]:
        if abs(v) >= 1:
            print(f'{v:8.1f}  {k[:110]}')


main()
