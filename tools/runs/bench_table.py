#!/usr/bin/env python3
"""Tables the output of several `cargo xtask bench train` runs (one log file each) as the
speed table of docs/RESULTS.md section 7: per method, the median over the runs of the `full`
and the five `single` seconds per epoch (wall, CPU in parentheses), and of the two ratios the
bench prints (five single-length models / one `full` run; a `full` epoch / a CSQ `full` epoch),
each with its range over the runs.

    python3 tools/runs/bench_table.py run1.log run2.log run3.log
"""

import re
import statistics
import sys

SECONDS = re.compile(r"^(\w+) (full|single x5)\s+([\d.]+)\s+\S+\s+([\d.]+)")
SPEEDUP = re.compile(
    r"^(\w+): five single-length models / one full run, median over epochs: "
    r"([\d.]+)x \(([\d.]+)x in CPU"
)
AGAINST_CSQ = re.compile(
    r"^(\w+) full epoch / csq full epoch, median over epochs: ([\d.]+)x \(([\d.]+)x in CPU"
)


def parse(path):
    """{method: {key: (wall, cpu)}} of one log."""
    out = {}
    # The seconds table runs from its heading to the per-phase table, whose rows look alike.
    in_seconds = False
    with open(path) as f:
        for line in f:
            if line.startswith("training seconds per epoch"):
                in_seconds = True
            elif line.startswith("microseconds per step"):
                in_seconds = False
            for pattern, key in ((SECONDS, None), (SPEEDUP, "speedup"), (AGAINST_CSQ, "csq")):
                if pattern is SECONDS and not in_seconds:
                    continue
                m = pattern.match(line)
                if not m:
                    continue
                if key is None:
                    method, mode, wall, cpu = m.groups()
                    key = "full" if mode == "full" else "single"
                else:
                    method, wall, cpu = m.groups()
                out.setdefault(method, {})[key] = (float(wall), float(cpu))
                break
    if not out:
        sys.exit(f"{path}: no `bench train` figures found")
    return out


def median_range(values, fmt):
    """The median (with an `x`) and, over two runs or more, the range (without)."""
    med = fmt.format(statistics.median(values)) + "x"
    if len(values) < 2:
        return med
    return med, f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def cell(runs, method, key, fmt, ratio):
    pairs = [r[method][key] for r in runs if key in r.get(method, {})]
    if not pairs:
        return "1.00x" if key == "csq" else "-"
    walls, cpus = [p[0] for p in pairs], [p[1] for p in pairs]
    if not ratio:
        return f"{fmt.format(statistics.median(walls))} ({fmt.format(statistics.median(cpus))})"
    wall, cpu = median_range(walls, fmt), median_range(cpus, fmt)
    if isinstance(wall, str):
        return f"{wall} ({cpu})"
    return f"{wall[0]} ({cpu[0]}); {wall[1]} ({cpu[1]})"


def main():
    paths = sys.argv[1:]
    if not paths:
        sys.exit(__doc__)
    runs = [parse(p) for p in paths]
    methods = []
    for r in runs:
        methods += [m for m in r if m not in methods]
    print(
        "| method | `full` s/epoch (CPU s) | five `single` s/epoch (CPU s) "
        "| single / full: median; range | `full` / CSQ `full`: median; range |"
    )
    print("|---|---|---|---|---|")
    for m in methods:
        print(
            f"| {m} | {cell(runs, m, 'full', '{:.3f}', False)} "
            f"| {cell(runs, m, 'single', '{:.3f}', False)} "
            f"| {cell(runs, m, 'speedup', '{:.2f}', True)} "
            f"| {cell(runs, m, 'csq', '{:.2f}', True)} |"
        )


if __name__ == "__main__":
    main()
