"""Five-seed table (mean and sample standard deviation per length) of Rust run directories
(`metrics.json`) or twin result files (`twin.py --out`).

    python3 tools/torch_twin/table.py RUN_DIR_OR_JSON...
"""

import json
import os
import statistics
import sys
from collections import defaultdict


def rows(path):
    if os.path.isdir(path):
        with open(os.path.join(path, "metrics.json")) as f:
            m = json.load(f)
        for b in m["bits"]:
            yield m["seed"], int(b), m["map"][str(b)], m["map_tie_aware"][str(b)]
    else:
        with open(path) as f:
            for r in json.load(f)["rows"]:
                yield r["seed"], r["bits"], r["map"], r["map_tie_aware"]


def main():
    stable, tie = defaultdict(dict), defaultdict(dict)
    for path in sys.argv[1:]:
        for seed, bits, m, t in rows(path):
            stable[bits][seed] = m
            tie[bits][seed] = t
    for name, table in (("stable", stable), ("tie-aware", tie)):
        cells = []
        for bits in sorted(table):
            v = list(table[bits].values())
            sd = statistics.stdev(v) if len(v) > 1 else float("nan")
            cells.append(f"{bits}: {statistics.mean(v):.4f} ({sd:.4f}, n={len(v)})")
        print(f"{name:9s} " + " | ".join(cells))
    for bits in sorted(stable):
        print(f"  {bits:3d} bits per seed: " + " ".join(f"{s}:{stable[bits][s]:.4f}" for s in sorted(stable[bits])))


if __name__ == "__main__":
    main()
