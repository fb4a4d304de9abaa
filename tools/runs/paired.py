"""Markdown rows of the per-seed difference between two configurations, per code length, from the
run directories that tools/runs/seeds.sh writes (OUT_DIR/seed-S/metrics.json): for the seeds both
have, the mean of A - B in final mAP@ALL (stable ties), its standard error (sample sd / sqrt(n)),
and on how many seeds A is above B.

    python3 tools/runs/paired.py A_LABEL=A_DIR B_LABEL=B_DIR [--seeds 0-4]

Pairing by seed takes out what the two runs of one seed share (the data order of every epoch and
the backbone's initial weights), so the difference is measured more tightly than by comparing the
two means.
"""

import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
import table  # noqa: E402


def load(out):
    return {run["seed"]: run for run in table.load(out)}


def seed_range(text):
    lo, _, hi = text.partition("-")
    return set(range(int(lo), int(hi or lo) + 1))


def main():
    args = sys.argv[1:]
    wanted = None
    if "--seeds" in args:
        i = args.index("--seeds")
        wanted = seed_range(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    (la, da), (lb, db) = (arg.split("=", 1) for arg in args)
    a, b = load(da), load(db)
    seeds = sorted(set(a) & set(b) & (wanted if wanted is not None else set(a)))
    if len(seeds) < 2:
        sys.exit(f"{la} and {lb} share {len(seeds)} seed(s); a spread needs two")
    bits = [str(x) for x in a[seeds[0]]["bits"]]
    print(f"| {la} - {lb}, seeds {seeds[0]}-{seeds[-1]} (n = {len(seeds)}) | " + " | ".join(bits) + " |")
    print("|---" * (len(bits) + 1) + "|")
    means, wins = [], []
    for bit in bits:
        diff = [a[s]["map"][bit] - b[s]["map"][bit] for s in seeds]
        se = statistics.stdev(diff) / math.sqrt(len(diff))
        means.append(f"{statistics.mean(diff):+.4f} ({se:.4f})")
        wins.append(f"{sum(d > 0 for d in diff)} of {len(diff)}")
    print("| mean difference (standard error) | " + " | ".join(means) + " |")
    print(f"| seeds where {la} is above | " + " | ".join(wins) + " |")


if __name__ == "__main__":
    main()
