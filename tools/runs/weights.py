"""Markdown rows of the mean dominance weights that `metrics.json` records per epoch in the
weighted modes (`dominance_weights_per_epoch`), one row per run directory: the run's mAP@ALL at
the shortest and longest lengths, its live backbone units, and `w_k` for every length at the
epochs asked for (counted from 1).

    python3 tools/runs/weights.py [--epochs 1,10,30] LABEL=RUN_DIR [LABEL=RUN_DIR ...]
"""

import json
import os
import sys


def row(label, run, epochs):
    with open(os.path.join(run, "metrics.json")) as f:
        metrics = json.load(f)
    per_epoch = metrics.get("dominance_weights_per_epoch", [])
    if not per_epoch:
        sys.exit(f"{run}: metrics.json has no dominance weights (not an adaptive or full run?)")
    bits = [str(b) for b in metrics["bits"]]
    maps = f"{metrics['map'][bits[0]]:.3f} / {metrics['map'][bits[-1]]:.3f}"
    live = ", ".join(str(u["live"]) for u in metrics.get("backbone_live_units", []))
    cells = []
    for e in epochs:
        if not 1 <= e <= len(per_epoch):
            sys.exit(f"{run}: epoch {e} not in 1..{len(per_epoch)}")
        cells.append(" ".join(f"{w:.2f}" for w in per_epoch[e - 1]))
    return f"| {label} | {maps} | {live} | " + " | ".join(cells) + " |"


def main(argv):
    epochs = [1, 10, 30]
    if argv[:1] == ["--epochs"]:
        epochs = [int(e) for e in argv[1].split(",")]
        argv = argv[2:]
    if not argv:
        sys.exit(__doc__)
    print("| run | mAP shortest / longest | live units | "
          + " | ".join(f"`w_k`, epoch {e}" for e in epochs) + " |")
    print("|---" * (3 + len(epochs)) + "|")
    for arg in argv:
        label, run = arg.split("=", 1)
        print(row(label, run, epochs))


if __name__ == "__main__":
    main(sys.argv[1:])
