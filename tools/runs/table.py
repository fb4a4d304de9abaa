"""Markdown rows of mean (sample sd) over seeds, per code length, from the run directories that
tools/runs/seeds.sh writes (OUT_DIR/seed-S/metrics.json): final mAP@ALL with the stable tie order,
the tie-aware mAP, and the training seconds.

    python3 tools/runs/table.py [--per-seed] LABEL=OUT_DIR [LABEL=OUT_DIR ...]

With --per-seed it prints one row per seed instead (stable ties, three decimals). Runs whose
metrics.json lists collapsed lengths (`xtask train --on-collapse keep`) are named under the table.
"""

import json
import os
import statistics
import sys


def load(out):
    runs = []
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name, "metrics.json")
        if name.startswith("seed-") and os.path.isfile(path):
            with open(path) as f:
                runs.append(json.load(f))
    return runs


def cell(values):
    if len(values) > 1:
        return f"{statistics.mean(values):.4f} ({statistics.stdev(values):.4f})"
    return f"{values[0]:.4f}"


def per_seed(args):
    print("| run | seed | final mAP@ALL (8 / 16 / 32 / 64 / 128) | tie-aware | training s |")
    print("|---|---|---|---|---|")
    for arg in args:
        label, out = arg.split("=", 1)
        for r in load(out):
            bits = [str(b) for b in r["bits"]]
            stable = " / ".join(f"{r['map'][b]:.3f}" for b in bits)
            tie = " / ".join(f"{r['map_tie_aware'][b]:.3f}" for b in bits)
            print(f"| {label} | {r['seed']} | {stable} | {tie} | {r['train_seconds']:.1f} |")


def collapsed(args):
    """One line naming every run with collapsed lengths, or nothing."""
    found = []
    for arg in args:
        label, out = arg.split("=", 1)
        for r in load(out):
            lengths = r.get("collapsed_lengths", [])
            if lengths:
                found.append(f"{label} seed {r['seed']}: " + ", ".join(str(b) for b in lengths) + " bits")
    if found:
        print()
        print("Collapsed codes (every item one code; `--on-collapse keep`): " + "; ".join(found) + ".")


def main():
    if sys.argv[1:2] == ["--per-seed"]:
        per_seed(sys.argv[2:])
        collapsed(sys.argv[2:])
        return
    header = None
    for arg in sys.argv[1:]:
        label, out = arg.split("=", 1)
        runs = load(out)
        if not runs:
            print(f"| {label} | no runs |")
            continue
        bits = [int(b) for b in runs[0]["bits"]]
        if header is None:
            header = bits
            cols = " | ".join(str(b) for b in bits)
            print(f"| run (seeds) | {cols} | mean over lengths | training s |")
            print("|---" * (len(bits) + 3) + "|")
        seeds = ",".join(str(r["seed"]) for r in runs)
        stable = [cell([r["map"][str(b)] for r in runs]) for b in bits]
        tie = [cell([r["map_tie_aware"][str(b)] for r in runs]) for b in bits]
        avg = cell([statistics.mean(r["map"][str(b)] for b in bits) for r in runs])
        secs = cell([r["train_seconds"] for r in runs])
        print(f"| {label} ({seeds}) | " + " | ".join(stable) + f" | {avg} | {secs} |")
        print(f"| {label}, tie-aware | " + " | ".join(tie) + " | | |")
    collapsed(sys.argv[1:])


if __name__ == "__main__":
    main()
