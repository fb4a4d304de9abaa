"""Mean |u| of a trained model's hash outputs in each length's block of columns.

    python3 tools/runs/output_scale.py RUN_DIR [RUN_DIR ...]

For each run directory it runs the model (for a `single` run, its longest) on the first 2,000
training items and prints the mean absolute output over the columns `b_{k-1}..b_k` of every
length. In Hamming distance every bit weighs the same; a block whose outputs stay near zero holds
bits whose signs training barely decided.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import run_dirs  # noqa: E402


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for run, metrics, split, prefix, model in run_dirs.models(sys.argv[1:]):
        bits = [int(b) for b in metrics["bits"]]
        if prefix and prefix != f"b{bits[-1]}.":
            continue
        u = run_dirs.hidden(model, split[0][0][:2000]) @ model["hash.weight"].T + model["hash.bias"]
        cells = [f"{a}-{b}: {np.abs(u[:, a:b]).mean():.2f}" for a, b in zip([0] + bits[:-1], bits)]
        print(f"{run} {metrics['method']} {metrics['mode']} seed {metrics['seed']}: mean |u| " + ", ".join(cells))


if __name__ == "__main__":
    main()
