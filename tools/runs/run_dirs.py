"""The trained models of run directories (`cargo xtask train --out RUN_DIR`), for the scripts that
look inside them: each run's metrics.json, its protocol's split (tools/torch_twin/data.py) and the
backbone and head of its longest model. Needs numpy only."""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "torch_twin"))
import data  # noqa: E402


def models(runs):
    """Yields `(run, metrics, split, prefix, model)` for every model of every run directory:
    one for a nested run, one per length for a `single` run (`prefix` `bN.`, longest last)."""
    splits = {}
    for run in runs:
        with open(os.path.join(run, "metrics.json")) as f:
            metrics = json.load(f)
        protocol = metrics["protocol"]
        if protocol not in splits:
            splits[protocol] = data.load(protocol)
        tensors = data.read_safetensors(os.path.join(run, "model.safetensors"))
        prefixes = [""] if metrics["mode"] != "single" else [f"b{b}." for b in metrics["bits"]]
        for prefix in prefixes:
            model = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            yield run, metrics, splits[protocol], prefix, model


def hidden(model, x):
    """The backbone's ReLU outputs `relu(x W1^T + b1)`."""
    return np.maximum(x @ model["backbone.weight"].T + model["backbone.bias"], 0)
