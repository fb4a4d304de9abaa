"""The Rust optimiser's arithmetic (crates/nhl-train/src/optim.rs, crates/nhl-kernels/src/cpu/
adam.rs) in f32, for telling its rounding apart from the rest of the trainer: every constant is
an f32, the bias corrections `1 - beta^t` are formed in f64 from the f32 betas and rounded once
(`bias="f64"`, what optim.rs does) or in f32 by `powi`, compiler-rt's repeated squaring
(`bias="f32-powi"`), and the update is `p -= lr (m / bias1) / (sqrt(v / bias2) + eps)`."""

import numpy as np
import torch

F = np.float32


def powi(a, b):
    """compiler-rt's `__powisf2`: repeated squaring in f32."""
    a, r = F(a), F(1.0)
    while True:
        if b & 1:
            r = F(r * a)
        b //= 2
        if b == 0:
            return r
        a = F(a * a)


class OursAdam:
    def __init__(self, params, lr=1e-3, weight_decay=1e-5, bias="f64"):
        self.params = list(params)
        self.lr, self.wd = F(lr), F(weight_decay)
        self.b1, self.b2, self.eps = F(0.9), F(0.999), F(1e-8)
        self.bias = bias
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        if self.bias == "f64":
            bias1 = F(1 - float(self.b1) ** self.t)
            bias2 = F(1 - float(self.b2) ** self.t)
        else:
            bias1, bias2 = F(1) - powi(self.b1, self.t), F(1) - powi(self.b2, self.t)
        one = F(1)
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad + float(self.wd) * p
            m.copy_(float(self.b1) * m + float(one - self.b1) * g)
            v.copy_(float(self.b2) * v + float(one - self.b2) * g * g)
            p.sub_(float(self.lr) * (m / float(bias1)) / ((v / float(bias2)).sqrt() + float(self.eps)))
