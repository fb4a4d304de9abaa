"""Our seeded generator (crates/nhl-kernels/src/rng.rs) and the draws the trainer makes from it.

Reimplemented from the Rust source so that the twin starts from the Rust trainer's initial
weights and visits the training items in its order; `check_init` compares the result with a
checkpoint written by `tools/torch_twin/dump.rs` bit for bit.
"""

import math

import numpy as np

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
# crates/nhl-train/src/trainer.rs, SHUFFLE_STREAM: the shuffling generator's seed is seed ^ this.
SHUFFLE_STREAM = 0x5348_5546_464C_4521


def _mix(z):
    """SplitMix64's output function on Python ints or numpy uint64 arrays."""
    if isinstance(z, np.ndarray):
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class SplitMix64:
    """SplitMix64 with the same stream and the same derived draws as the Rust type."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + GAMMA) & MASK
        return _mix(self.state)

    def next_u64_array(self, n):
        """The next `n` outputs at once (the state advances by `n` steps)."""
        k = np.arange(1, n + 1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            states = np.uint64(self.state) + k * np.uint64(GAMMA)
        self.state = (self.state + n * GAMMA) & MASK
        return _mix(states)

    def next_f64(self):
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def uniform_array(self, n, lo, hi):
        """`n` draws of `lo + (hi - lo) * next_f64()`, in f64, as the Rust loop computes them."""
        f = (self.next_u64_array(n) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
        return lo + (hi - lo) * f

    def normal(self):
        """Box-Muller, one draw per call; `math` calls the same C library as Rust's `f64`."""
        u1 = 1.0 - self.next_f64()
        u2 = self.next_f64()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(math.tau * u2)

    def below(self, n):
        """Lemire's multiply-shift with rejection, uniform in `0..n`."""
        threshold = ((-n) & MASK) % n
        while True:
            m = self.next_u64() * n
            if (m & MASK) >= threshold:
                return m >> 64

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def initial_weights(seed, input_dim, hidden, code_bits):
    """`NestedHashModel::new` (crates/nhl-train/src/model.rs): f32 arrays in its draw order.

    Backbone weight `[hidden, input_dim]` then bias `[hidden]`, uniform in +-1/sqrt(input_dim);
    hash weight `[code_bits, hidden]` = 0.01 * N(0, 1) (rounded from f64 to f32); hash bias 0.
    """
    rng = SplitMix64(seed)
    bound = 1.0 / math.sqrt(input_dim)
    w1 = rng.uniform_array(hidden * input_dim, -bound, bound).astype(np.float32)
    b1 = rng.uniform_array(hidden, -bound, bound).astype(np.float32)
    w2 = np.array([0.01 * rng.normal() for _ in range(code_bits * hidden)], dtype=np.float64)
    return {
        "backbone.weight": w1.reshape(hidden, input_dim),
        "backbone.bias": b1.reshape(1, hidden),
        "hash.weight": w2.astype(np.float32).reshape(code_bits, hidden),
        "hash.bias": np.zeros((1, code_bits), dtype=np.float32),
    }


def epoch_orders(seed, n_items, epochs):
    """The trainer's batch order: one generator for the run, a fresh Fisher-Yates shuffle of
    `0..n_items` per epoch (each model of a `single` run restarts it from the seed)."""
    rng = SplitMix64(seed ^ SHUFFLE_STREAM)
    orders = []
    for _ in range(epochs):
        order = list(range(n_items))
        rng.shuffle(order)
        orders.append(np.array(order, dtype=np.int64))
    return orders
