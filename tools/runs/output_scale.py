"""Mean |u| of a trained model's hash outputs in each length's block of columns.

    python3 tools/runs/output_scale.py RUN_DIR [RUN_DIR ...]

For each run directory (`cargo xtask train --out RUN_DIR`; protocol from its metrics.json) it runs
the model on the first 2,000 training items and prints the mean absolute output over the columns
`b_{k-1}..b_k` of every length (for a `single` run, of its longest model). In Hamming distance every
bit weighs the same; a block whose outputs stay near zero holds bits whose signs training barely
decided. Needs numpy only.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "torch_twin"))
import data  # noqa: E402
from hidden_units import tensors  # noqa: E402


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    splits = {}
    for run in sys.argv[1:]:
        with open(os.path.join(run, "metrics.json")) as f:
            metrics = json.load(f)
        protocol, bits = metrics["protocol"], [int(b) for b in metrics["bits"]]
        if protocol not in splits:
            splits[protocol] = data.load(protocol)
        x = splits[protocol][0][0][:2000]
        model = tensors(os.path.join(run, "model.safetensors"))
        prefix = f"b{bits[-1]}." if metrics["mode"] == "single" else ""
        hidden = np.maximum(x @ model[prefix + "backbone.weight"].T + model[prefix + "backbone.bias"], 0)
        u = hidden @ model[prefix + "hash.weight"].T + model[prefix + "hash.bias"]
        starts = [0] + bits[:-1]
        cells = [f"{a}-{b}: {np.abs(u[:, a:b]).mean():.2f}" for a, b in zip(starts, bits)]
        print(f"{run} {metrics['method']} {metrics['mode']} seed {metrics['seed']}: mean |u| " + ", ".join(cells))


if __name__ == "__main__":
    main()
