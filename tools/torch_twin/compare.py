"""Step-by-step comparison of the Rust trainer (a dump of `tools/torch_twin/dump.rs`) with the
twin started from the same weights and fed the same batches.

    python3 tools/torch_twin/compare.py --dump DIR [--protocol fmnist]

Checks that `splitmix.py` rebuilds the dumped initial weights and first epoch order bit for bit,
then compares the first step's gradients and the loss of every dumped step with the twin in
float32 and in float64, and the parameters after the last dumped step.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import data  # noqa: E402
import ours_adam  # noqa: E402
import splitmix  # noqa: E402
import twin  # noqa: E402


def twin_params(model):
    return {
        "backbone.weight": model.backbone.weight,
        "backbone.bias": model.backbone.bias,
        "hash.weight": model.hash.weight,
        "hash.bias": model.hash.bias,
    }


def rel(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def run_twin(dump, split, dtype, orders, steps, batch_size=64, optimiser="torch"):
    bits = dump["bits"]
    (x_train, y_train), _, _ = split
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    model = twin.make_model("ours", dump["seed"], x_train.shape[1], bits, tdtype)
    if optimiser == "torch":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    else:
        opt = ours_adam.OursAdam(model.parameters(), bias=optimiser.removeprefix("ours-"))
    x = torch.from_numpy(x_train).to(tdtype)
    centres = torch.from_numpy(twin.csq_centres(bits, data.N_CLASSES)).to(tdtype)
    targets = centres[torch.from_numpy(y_train)]
    batches = [o[i : i + batch_size] for o in orders for i in range(0, len(o), batch_size)]
    losses, grad0 = [], None
    for step, idx in enumerate(batches[:steps]):
        idx = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        loss = twin.csq_loss(model(x[idx]), targets[idx])
        opt.zero_grad()
        loss.backward()
        if step == 0:
            grad0 = {k: v.grad.detach().numpy().copy() for k, v in twin_params(model).items()}
        opt.step()
        losses.append(loss.item())
    params = {k: v.detach().numpy().copy() for k, v in twin_params(model).items()}
    return losses, grad0, params


def gradient_at(params, dump, split, batch, dtype):
    """The twin's gradient on `batch` at the parameters `params` (a dump's tensors)."""
    (x_train, y_train), _, _ = split
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    model = twin.make_model("ours", dump["seed"], x_train.shape[1], dump["bits"], tdtype)
    with torch.no_grad():
        for name, t in twin_params(model).items():
            t.copy_(torch.from_numpy(params[name].reshape(t.shape).copy()))
    centres = torch.from_numpy(twin.csq_centres(dump["bits"], data.N_CLASSES)).to(tdtype)
    idx = torch.from_numpy(np.asarray(batch, dtype=np.int64))
    x = torch.from_numpy(x_train).to(tdtype)[idx]
    loss = twin.csq_loss(model(x), centres[torch.from_numpy(y_train)][idx])
    loss.backward()
    return {k: v.grad.detach().numpy().copy() for k, v in twin_params(model).items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", required=True)
    p.add_argument("--protocol", default="fmnist", choices=["fmnist", "fmnist-t10k"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--last-step-only", action="store_true",
                   help="only the last step's gradient at the Rust parameters (no twin trajectory)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.dump, "steps.json")) as f:
        dump = json.load(f)
    split = data.load(args.protocol)
    n = len(split[0][1])

    init = data.read_safetensors(os.path.join(args.dump, "init.safetensors"))
    ours = splitmix.initial_weights(dump["seed"], split[0][0].shape[1], twin.HIDDEN, dump["bits"])
    for name, value in init.items():
        same = np.array_equal(value.view(np.uint32), ours[name].reshape(value.shape).view(np.uint32))
        print(f"init {name}: {'bit-identical' if same else 'DIFFERS'}")
    epochs = -(-dump["steps"] // -(-n // 64))
    orders = splitmix.epoch_orders(dump["seed"], n, max(epochs, 1))
    print("order of epoch 1:", "identical" if list(orders[0]) == dump["order0"] else "DIFFERS")

    last = dump["steps"] - 1
    before = data.read_safetensors(os.path.join(args.dump, "before_last.safetensors"))
    rust_grad = data.read_safetensors(os.path.join(args.dump, "grad_last.safetensors"))
    batches = [o[i : i + 64] for o in orders for i in range(0, len(o), 64)]
    print(f"\nstep {last}'s gradient at the Rust parameters before it (rust vs f64 | twin f32 vs f64):")
    g = {d: gradient_at(before, dump, split, batches[last], d) for d in ("float32", "float64")}
    for name in rust_grad:
        g64 = g["float64"][name].reshape(rust_grad[name].shape)
        g32 = g["float32"][name].reshape(rust_grad[name].shape)
        print(f"  {name:16s} {rel(rust_grad[name], g64):.3e} | {rel(g32, g64):.3e}")
    if args.last_step_only:
        return

    rust_grad0 = data.read_safetensors(os.path.join(args.dump, "grad0.safetensors"))
    rust_after = data.read_safetensors(os.path.join(args.dump, "after.safetensors"))
    runs = {d: run_twin(dump, split, d, orders, dump["steps"]) for d in ("float32", "float64")}
    f32, f64 = runs["float32"], runs["float64"]
    ours_runs = {o: run_twin(dump, split, "float32", orders, dump["steps"], optimiser=o)
            for o in ("ours-f64", "ours-f32-powi")}
    print("\nfirst step's gradient, relative L2 difference (rust vs f64 | twin f32 vs f64):")
    for name in rust_grad0:
        g64 = f64[1][name].reshape(rust_grad0[name].shape)
        g32 = f32[1][name].reshape(rust_grad0[name].shape)
        print(f"  {name:16s} {rel(rust_grad0[name], g64):.3e} | {rel(g32, g64):.3e}")
    print("\nloss per step (rust, twin f32, twin f64; twin f32 with the Rust Adam arithmetic, "
          "with bias corrections from f64 and from f32 powi):")
    rl = dump["losses"]
    for s in sorted(set([0, 1, 2, 5, 10, 20, 50, 78, 79, 100, 200, len(rl) - 1])):
        if s < len(rl):
            print(f"  step {s:4d}: {rl[s]:.9f} {f32[0][s]:.9f} {f64[0][s]:.9f} | "
                  f"{ours_runs['ours-f64'][0][s]:.9f} {ours_runs['ours-f32-powi'][0][s]:.9f}")
    print("\nparameters after the last step, relative L2 difference (rust vs f64 | twin f32 vs f64 |"
          " rust vs twin f32 | rust vs twin f32 with the Rust Adam arithmetic, bias corrections"
          " from f64 | from f32 powi):")
    for name in rust_after:
        a64 = f64[2][name].reshape(rust_after[name].shape)
        a32 = f32[2][name].reshape(rust_after[name].shape)
        o64 = ours_runs["ours-f64"][2][name].reshape(rust_after[name].shape)
        o32 = ours_runs["ours-f32-powi"][2][name].reshape(rust_after[name].shape)
        print(f"  {name:16s} {rel(rust_after[name], a64):.3e} | {rel(a32, a64):.3e} | "
              f"{rel(rust_after[name], a32):.3e} | "
              f"{rel(rust_after[name], o64):.3e} | {rel(rust_after[name], o32):.3e}")


if __name__ == "__main__":
    main()
