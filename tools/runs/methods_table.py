"""The table of tools/runs/methods.sh as markdown: per method, the mean over the seeds present of
the final mAP@ALL (stable tie order) of five single-length models and of one `full` run at every
code length, each one's average over the lengths, `full` minus `single` of those averages, the
tie-aware averages beside them, and the training seconds of both with their ratio.

    python3 tools/runs/methods_table.py OUT_DIR [--seeds 0,1,2] [--per-seed] [METHOD ...]

`--seeds` keeps only the seeds named (default: every seed both modes have); `--per-seed` adds,
per method, each seed's average over the lengths of `single` and `full` and their difference, and
the mean and sample sd of those differences; METHODs restrict the table to those methods. Runs
whose metrics.json lists collapsed lengths (`--on-collapse keep`) are named under the table.
"""

import json
import os
import statistics
import sys

METHODS = "csq dpn dsh dhn dbdh dpsh hashnet dch dtsh lcdsh shcir mdsh".split()


def load(out, method, mode):
    d = os.path.join(out, f"{method}-{mode}")
    runs = {}
    if not os.path.isdir(d):
        return runs
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name, "metrics.json")
        if name.startswith("seed-") and os.path.isfile(path):
            with open(path) as f:
                r = json.load(f)
            runs[r["seed"]] = r
    return runs


def mean(values):
    return statistics.mean(values)


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    out, wanted, per_seed, methods = args[0], None, False, []
    rest = iter(args[1:])
    for a in rest:
        if a == "--seeds":
            wanted = {int(x) for x in next(rest).split(",")}
        elif a == "--per-seed":
            per_seed = True
        elif a in METHODS:
            methods.append(a)
        else:
            sys.exit(f"unknown argument {a!r}\n{__doc__}")
    rows = []
    bits = None
    for m in methods or METHODS:
        single, full = load(out, m, "single"), load(out, m, "full")
        # Only seeds both modes have, so the two sides average over the same seeds.
        seeds = sorted(set(single) & set(full) & (wanted if wanted is not None else set(single)))
        if not seeds:
            continue
        bits = [int(b) for b in full[seeds[0]]["bits"]]

        def per_length(runs, key):
            return [mean(runs[s][key][str(b)] for s in seeds) for b in bits]

        def avg(runs, key):
            return mean(mean(runs[s][key][str(b)] for b in bits) for s in seeds)

        secs_s = mean(single[s]["train_seconds"] for s in seeds)
        secs_f = mean(full[s]["train_seconds"] for s in seeds)
        rows.append((m, seeds, per_length(single, "map"), per_length(full, "map"),
                     avg(single, "map"), avg(full, "map"),
                     avg(single, "map_tie_aware"), avg(full, "map_tie_aware"), secs_s, secs_f))
    if not rows:
        print("no runs")
        return
    lengths = " | ".join(f"{b}" for b in bits)
    print(f"| method (seeds) | mode | {lengths} | mean | full - single | tie-aware mean | training s | single s / full s |")
    print("|---" * (len(bits) + 7) + "|")
    for m, seeds, ps, pf, a_s, a_f, t_s, t_f, secs_s, secs_f in rows:
        label = f"{m} ({','.join(str(s) for s in seeds)})"
        print(f"| {label} | single | " + " | ".join(f"{v:.4f}" for v in ps)
              + f" | {a_s:.4f} | | {t_s:.4f} | {secs_s:.1f} | |")
        print(f"| | full | " + " | ".join(f"{v:.4f}" for v in pf)
              + f" | {a_f:.4f} | {a_f - a_s:+.4f} | {t_f:.4f} | {secs_f:.1f} | {secs_s / secs_f:.2f}x |")
    collapsed = []
    for m, seeds, *_ in rows:
        for mode in ("single", "full"):
            runs = load(out, m, mode)
            for s in seeds:
                lengths = runs[s].get("collapsed_lengths", [])
                if lengths:
                    collapsed.append(f"{m} {mode} seed {s}: " + ", ".join(f"{b}" for b in lengths) + " bits")
    if collapsed:
        print()
        print("Collapsed codes (every item one code; `--on-collapse keep`): " + "; ".join(collapsed) + ".")
    if per_seed:
        print()
        print("| method | seed | single mean | full mean | full - single |")
        print("|---|---|---|---|---|")
        for m, seeds, *_ in rows:
            single, full = load(out, m, "single"), load(out, m, "full")
            diffs = []
            for s in seeds:
                a_s = mean(single[s]["map"][str(b)] for b in bits)
                a_f = mean(full[s]["map"][str(b)] for b in bits)
                diffs.append(a_f - a_s)
                print(f"| {m} | {s} | {a_s:.4f} | {a_f:.4f} | {a_f - a_s:+.4f} |")
            if len(diffs) > 1:
                above = sum(d >= 0 for d in diffs)
                print(f"| {m} | mean (sd) | | | {mean(diffs):+.4f} ({statistics.stdev(diffs):.4f}); "
                      f"full >= single on {above} of {len(diffs)} |")


if __name__ == "__main__":
    main()
