//! The dominance weights as training computes them, `HashingOps::dominance_weights` with the rule
//! of `nhl_train::weighting`, on the CPU backend (which evaluates the rule) and on the GPU
//! backend (which runs the rule's WGSL twin), against the rule itself in `f64`, on seeded random
//! products with many conflicts. GPU runs skip with a notice when there is no adapter, and fail
//! then when `NHL_REQUIRE_GPU=1`.

use anyhow::{ensure, Result};
use nhl_kernels::rng::SplitMix64;
use nhl_kernels::testing::assert_close;
use nhl_kernels::{HashingOps, KernelError, Shape};
use nhl_train::weighting::dominance_weights;

fn check_weights_follow_the_rule<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let mut rng = SplitMix64::new(1900);
    let mut conflicts = 0;
    for case in 0..60 {
        let k = 1 + case % 7;
        let beta = if case % 2 == 0 { 1.0 } else { 0.5 };
        // Own norms N_i in [0.5, 2]; cross products mostly negative and often beyond the
        // threshold, so every branch of the rule is taken; the last case has zero gradients.
        let mut products = Vec::with_capacity(k * (k + 1) / 2);
        for i in 0..k {
            for j in i..k {
                let p = if case == 59 {
                    0.0
                } else if i == j {
                    rng.uniform(0.5, 2.0)
                } else {
                    rng.uniform(-3.0, 1.0)
                };
                // Both sides see the f32 the backend holds.
                products.push(p as f32);
            }
        }
        let exact: Vec<f64> = products.iter().map(|&p| f64::from(p)).collect();
        let want = dominance_weights(&exact, k, f64::from(beta));
        conflicts += want.iter().filter(|&&w| (w - want[0]).abs() > 1e-9).count();
        ensure!(
            (want.iter().sum::<f64>() - k as f64).abs() < 1e-9,
            "weights sum to K"
        );
        let shape = Shape::new(1, products.len());
        let got = b.dominance_weights(&b.upload(&products, shape)?, k, beta, dominance_weights)?;
        ensure!(b.shape(&got) == Shape::new(1, k));
        let got: Vec<f64> = b.download(&got)?.into_iter().map(f64::from).collect();
        assert_close(
            &format!("dominance weights k {k} beta {beta} case {case}"),
            &got,
            &want,
            1e-6,
            1e-5,
        );
    }
    ensure!(
        conflicts > 50,
        "the cases exercise the down-weighting ({conflicts})"
    );
    let x = b.upload(&[1.0; 6], Shape::new(1, 6))?;
    for k in [0, 2, 4] {
        ensure!(matches!(
            b.dominance_weights(&x, k, 1.0, dominance_weights),
            Err(KernelError::Shape { .. })
        ));
    }
    Ok(())
}

#[test]
fn cpu_weights_follow_the_rule() -> Result<()> {
    check_weights_follow_the_rule(&nhl_kernels::cpu::CpuBackend::<f32>::new())
}

#[test]
fn gpu_weights_follow_the_rule() -> Result<()> {
    match nhl_kernels::gpu::test_backend() {
        Some(b) => check_weights_follow_the_rule(&b),
        None => Ok(()),
    }
}
