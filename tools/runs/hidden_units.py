"""How many of a trained model's backbone ReLU units fire, and how many items share one code.

    python3 tools/runs/hidden_units.py RUN_DIR [RUN_DIR ...]

For each run directory (`cargo xtask train --out RUN_DIR`, protocol `fmnist` or `fmnist-t10k`, read
from its metrics.json) it reads `model.safetensors` (every model of a `single` run: the `bN.`
prefixes), runs the backbone `relu(x W^T + b)` on the protocol's training items and reports:
- alive: units that fire (are positive) for at least one training item, of the hidden width;
- per item: the mean number of units that fire for one item;
- top code share: the fraction of database items whose longest code equals the most common one
  (from database_codes*.npy).
Needs numpy only; the data come from tools/torch_twin/data.py.
"""

import collections
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "torch_twin"))
import data  # noqa: E402


def tensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if spec["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name}: dtype {spec['dtype']}, expected F32")
        start, stop = spec["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + start : 8 + n + stop], dtype=np.float32).reshape(spec["shape"])
    return out


def top_share(codes_path):
    codes = np.load(codes_path)
    counts = collections.Counter(map(bytes, codes))
    return counts.most_common(1)[0][1] / len(codes)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    splits = {}
    for run in sys.argv[1:]:
        with open(os.path.join(run, "metrics.json")) as f:
            metrics = json.load(f)
        protocol = metrics["protocol"]
        if protocol not in splits:
            splits[protocol] = data.load(protocol)
        x_train = splits[protocol][0][0]
        model = tensors(os.path.join(run, "model.safetensors"))
        prefixes = sorted({k.rsplit("backbone.weight", 1)[0] for k in model if k.endswith("backbone.weight")},
                          key=lambda p: int(p[1:-1]) if p else 0)
        for prefix in prefixes:
            w, b = model[prefix + "backbone.weight"], model[prefix + "backbone.bias"]
            fired = (x_train @ w.T + b) > 0
            bits = prefix[1:-1] if prefix else str(metrics["bits"][-1])
            codes = os.path.join(run, f"database_codes_{bits}.npy" if prefix else "database_codes.npy")
            print(f"{run} {metrics['method']} {metrics['mode']} seed {metrics['seed']} "
                  f"{prefix or 'nested head'}: alive {int(fired.any(0).sum())} of {w.shape[0]}, "
                  f"per item {fired.sum(1).mean():.1f}, top code share {top_share(codes):.3f}")


if __name__ == "__main__":
    main()
