"""How many of a trained model's backbone ReLU units fire, and how many items share one code.

    python3 tools/runs/hidden_units.py RUN_DIR [RUN_DIR ...]

For every model of each run directory (a `single` run has one per length) it runs the backbone on
the protocol's training items and reports:
- alive: units that fire (are positive) for at least one training item, of the hidden width;
- per item: the mean number of units that fire for one item;
- top code share: the fraction of database items whose code (the model's longest) equals the
  most common one (from database_codes*.npy).
"""

import collections
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import run_dirs  # noqa: E402


def top_share(codes_path):
    codes = np.load(codes_path)
    counts = collections.Counter(map(bytes, codes))
    return counts.most_common(1)[0][1] / len(codes)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for run, metrics, split, prefix, model in run_dirs.models(sys.argv[1:]):
        fired = run_dirs.hidden(model, split[0][0]) > 0
        codes = f"database_codes_{prefix[1:-1]}.npy" if prefix else "database_codes.npy"
        print(f"{run} {metrics['method']} {metrics['mode']} seed {metrics['seed']} "
              f"{prefix or 'nested head'}: alive {int(fired.any(0).sum())} of {fired.shape[1]}, "
              f"per item {fired.sum(1).mean():.1f}, top code share {top_share(os.path.join(run, codes)):.3f}")


if __name__ == "__main__":
    main()
