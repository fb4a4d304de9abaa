"""A PyTorch twin of the protocol's single-length DHN training (docs/PROTOCOL.md, "Model and
training defaults"; DHN as docs/METHOD.md section 5 defines it: a bank of every training item's
last code, the pairwise likelihood against the whole bank, `alpha * mean(log cosh(|u| - 1))`).

It answers one question about the Rust trainer's DHN results: whether DHN on the protocol's MLP
kills the backbone's ReLU units in plain PyTorch too. Besides mAP@ALL it reports how many hidden
units are alive (positive for at least one query or database item) and how many fire per item.

    python3 tools/torch_twin/dhn_twin.py --protocol fmnist --seeds 0 1 2 --bits 8 64 --out dhn.json
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import data  # noqa: E402
import metrics  # noqa: E402
from twin import epoch_orders, evaluate, make_model, protocol_args  # noqa: E402


def dhn_loss(u, bank_u, s, alpha):
    theta = 0.5 * u @ bank_u.T
    likelihood = (F.softplus(-theta.abs()) + theta.clamp(min=0) - s * theta).mean()
    quantisation = torch.log(torch.cosh(u.abs() - 1)).mean()
    return likelihood + alpha * quantisation


@torch.no_grad()
def hidden_stats(model, split):
    _, (xq, _), (xd, _) = split
    x = torch.from_numpy(np.concatenate([xq, xd[:20000]]))
    a = torch.relu(model.backbone(x.to(model.backbone.weight.dtype)))
    fired = a > 0
    return int(fired.any(0).sum()), float(fired.sum(1).float().mean())


def train_one(args, split, bits, seed):
    (x_train, y_train), _, _ = split
    model = make_model("torch", seed, x_train.shape[1], bits, torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    x = torch.from_numpy(x_train)
    y = F.one_hot(torch.from_numpy(y_train).long(), data.N_CLASSES).float()
    bank_u = torch.zeros(len(x), bits)
    bank_y = torch.zeros(len(x), data.N_CLASSES)
    losses = []
    for order in epoch_orders("torch", seed, len(x), args.epochs):
        total, batches = 0.0, 0
        for start in range(0, len(order), args.batch_size):
            idx = torch.from_numpy(np.asarray(order[start : start + args.batch_size]))
            u = model(x[idx])
            bank_u[idx] = u.detach()
            bank_y[idx] = y[idx]
            s = (y[idx] @ bank_y.T > 0).float()
            loss = dhn_loss(u, bank_u, s, args.alpha)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        losses.append(total / batches)
    return model, losses


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    protocol_args(p, [8, 64])
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON file of the results, one row per model")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    split = data.load(args.protocol)
    rows = []
    for seed in args.seeds:
        for bits in args.bits:
            model, losses = train_one(args, split, bits, seed)
            alive, per_item = hidden_stats(model, split)
            m = evaluate(model, split, bits)
            row = {"seed": seed, "bits": bits, "map": m, "alive_units": alive,
                   "active_per_item": per_item, "loss_first": losses[0], "loss_last": losses[-1]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
