"""A PyTorch twin of the protocol's single-length CSQ training (docs/PROTOCOL.md, "Model and
training defaults"; docs/METHOD.md for CSQ), for comparing the Rust trainer with a
reference-like PyTorch trainer step by step and over seeds.

It can start from the Rust trainer's initial weights (`--init ours`) or from PyTorch's default
initialisation (`--init torch`), and take the Rust trainer's batch order (`--order ours`) or a
`torch.randperm` per epoch (`--order torch`). Everything else is plain PyTorch: `nn.Linear`,
`torch.tanh`, `F.binary_cross_entropy`, `torch.optim.Adam(weight_decay=...)`.

    python3 tools/torch_twin/twin.py --protocol fmnist --seeds 0 1 2 3 4 --out twin.json
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import data  # noqa: E402
import metrics  # noqa: E402
import ours_adam  # noqa: E402
import ours_tanh  # noqa: E402
import splitmix  # noqa: E402

CSQ_LAMBDA = 1e-4
HIDDEN = 1024


def hadamard(n):
    r = np.arange(n)
    parity = np.vectorize(lambda x: bin(x).count("1") & 1)(r[:, None] & r[None, :])
    return 1.0 - 2.0 * parity


def csq_centres(bits, n_classes):
    """Rows of [H_b; -H_b], class c gets row c (bits a power of two, n_classes <= 2 bits)."""
    h = hadamard(bits)
    return np.concatenate([h, -h])[:n_classes]


class Model(torch.nn.Module):
    def __init__(self, input_dim, bits):
        super().__init__()
        self.backbone = torch.nn.Linear(input_dim, HIDDEN)
        self.hash = torch.nn.Linear(HIDDEN, bits)

    def forward(self, x):
        return self.hash(torch.relu(self.backbone(x)))


def make_model(init, seed, input_dim, bits, dtype):
    if init == "torch":
        torch.manual_seed(seed)
        model = Model(input_dim, bits)
        torch.nn.init.normal_(model.hash.weight, 0.0, 0.01)
        torch.nn.init.zeros_(model.hash.bias)
    else:
        model = Model(input_dim, bits)
        weights = splitmix.initial_weights(seed, input_dim, HIDDEN, bits)
        with torch.no_grad():
            model.backbone.weight.copy_(torch.from_numpy(weights["backbone.weight"]))
            model.backbone.bias.copy_(torch.from_numpy(weights["backbone.bias"][0]))
            model.hash.weight.copy_(torch.from_numpy(weights["hash.weight"]))
            model.hash.bias.zero_()
    return model.to(dtype)


def csq_loss(u, h, tanh=torch.tanh):
    """CSQ as the reference computes it: BCE of (tanh(u)+1)/2 against (h+1)/2, mean over all
    entries, plus lambda mean((|tanh u| - 1)^2)."""
    v = tanh(u)
    centre = F.binary_cross_entropy(0.5 * (v + 1), 0.5 * (h + 1))
    quant = (v.abs() - 1).pow(2).mean()
    return centre + CSQ_LAMBDA * quant


def epoch_orders(order, seed, n, epochs):
    if order == "ours":
        return splitmix.epoch_orders(seed, n, epochs)
    g = torch.Generator().manual_seed(seed + 1_000_003)
    return [torch.randperm(n, generator=g).numpy() for _ in range(epochs)]


def train_one(args, split, bits, seed, step_log=None):
    (x_train, y_train), _, _ = split
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    model = make_model(args.init, seed, x_train.shape[1], bits, dtype)
    if args.adam == "torch":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    else:
        bias = "f32-powi" if args.adam == "ours-f32-powi" else "f64"
        opt = ours_adam.OursAdam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay,
                                 bias=bias)
    tanh = torch.tanh if args.tanh == "torch" else ours_tanh.OursTanh.apply
    x = torch.from_numpy(x_train).to(dtype)
    centres = torch.from_numpy(csq_centres(bits, data.N_CLASSES)).to(dtype)
    targets = centres[torch.from_numpy(y_train)]
    losses, step = [], 0
    for order in epoch_orders(args.order, seed, len(x_train), args.epochs):
        total, batches = 0.0, 0
        for start in range(0, len(order), args.batch_size):
            idx = torch.from_numpy(np.asarray(order[start : start + args.batch_size]))
            if args.drop_last and len(idx) < args.batch_size:
                continue
            loss = csq_loss(model(x[idx]), targets[idx], tanh)
            opt.zero_grad()
            loss.backward()
            if step_log is not None:
                step_log(step, loss.item(), model)
            opt.step()
            total += loss.item()
            batches += 1
            step += 1
            if args.steps and step >= args.steps:
                return model, losses
        losses.append(total / batches)
    return model, losses


@torch.no_grad()
def evaluate(model, split, bits):
    _, (xq, yq), (xd, yd) = split
    dtype = next(model.parameters()).dtype

    def codes(x):
        out = [model(torch.from_numpy(x[i : i + 4096]).to(dtype)) > 0 for i in range(0, len(x), 4096)]
        return torch.cat(out).numpy().astype(np.uint8)

    return metrics.map_all(codes(xq), yq, codes(xd), yd)


def protocol_args(p, bits):
    """The options every twin shares: the protocol, the seeds, the lengths (default `bits`) and
    the protocol's training settings (docs/PROTOCOL.md, "Model and training defaults")."""
    p.add_argument("--protocol", default="fmnist", choices=["fmnist", "fmnist-t10k"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--bits", type=int, nargs="+", default=bits)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-5)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    protocol_args(p, [8, 16, 32, 64, 128])
    p.add_argument("--init", default="torch", choices=["torch", "ours"])
    p.add_argument("--order", default="torch", choices=["torch", "ours"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--adam", default="torch", choices=["torch", "ours", "ours-f32-powi"],
                   help="torch.optim.Adam, or the Rust optimiser's f32 arithmetic (ours_adam.py) "
                        "with bias corrections from f64 or from f32 powi")
    p.add_argument("--tanh", default="torch", choices=["torch", "ours"],
                   help="torch.tanh, or the Rust CPU backend's tanh (ours_tanh.py)")
    p.add_argument("--drop-last", action="store_true", help="skip each epoch's partial batch")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON file of the results, one row per model")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    split = data.load(args.protocol)
    rows = []
    for seed in args.seeds:
        for bits in args.bits:
            t0 = time.time()
            model, losses = train_one(args, split, bits, seed)
            stable, tie = evaluate(model, split, bits)
            rows.append({"seed": seed, "bits": bits, "map": stable, "map_tie_aware": tie,
                         "loss_per_epoch": losses, "seconds": time.time() - t0})
            print(f"seed {seed} bits {bits}: mAP {stable:.4f} tie-aware {tie:.4f} "
                  f"final loss {losses[-1] if losses else float('nan'):.5f} ({time.time() - t0:.0f} s)",
                  flush=True)
            with open(args.out + ".tmp", "w") as f:
                json.dump({"args": vars(args), "rows": rows}, f, indent=1)
            os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
