//! [`HashingOps`] on the GPU backend: the host-side checks of `mod.rs`, then the kernels of
//! `shaders/loss.wgsl` (and the weighted prefix add of `shaders/rows.wgsl`). Every op only
//! records work; nothing is read back.

use super::bank::{bank_dims, batch_dims, BankLoss};
use super::{
    csq_dims, pair_dots_dims, pairs_gpu, sp_dims, weight_index_dims, weights_dims, HashingOps,
    WeightRule,
};
use crate::backend::Shape;
use crate::error::KernelError;
use crate::gpu::{
    check_index, kernel, params, prefix_params, u, Access, GpuBackend, GpuBuf, GpuIdx, Kernel,
};
use crate::shaders::Shader;

use Access::{Read as R, ReadWrite as W};

// Binding numbers follow the `@binding` of each shader's globals.
static CSQ: Kernel = kernel(
    Shader::Loss,
    "csq",
    &[(1, R), (2, R), (3, R), (4, W), (5, W)],
    &[],
);
static SP_GRAM: Kernel = kernel(Shader::Loss, "sp_gram", &[(1, R), (4, W)], &[]);
static SP_ROWS: Kernel = kernel(Shader::Loss, "sp_rows", &[(1, R), (4, W)], &[]);
static SP_GRAD: Kernel = kernel(
    Shader::Loss,
    "sp_grad",
    &[(1, R), (2, R), (4, W), (5, W)],
    &[],
);
static DOMINANCE_WEIGHTS: Kernel =
    kernel(Shader::Loss, "dominance_weights", &[(1, R), (4, W)], &[]);
static PAIR_DOTS: Kernel = kernel(
    Shader::Loss,
    "pair_dots",
    &[(1, R), (2, R), (3, R), (4, W)],
    &[],
);
static ADD_PREFIX_WEIGHTED: Kernel = kernel(
    Shader::Rows,
    "add_prefix_weighted",
    &[(1, R), (2, R), (4, W)],
    &[],
);

impl HashingOps for GpuBackend {
    fn csq_objective(
        &self,
        codes: &GpuBuf,
        bits: usize,
        targets: &GpuBuf,
        idx: &GpuIdx,
        lambda: f64,
    ) -> Result<(GpuBuf, GpuBuf), KernelError> {
        const OP: &str = "csq_objective";
        csq_dims(codes.shape, bits, targets.shape, idx.len)?;
        check_index(OP, idx, targets.shape.rows)?;
        let loss = self.alloc(OP, Shape::scalar())?;
        let grad = self.alloc(OP, Shape::new(codes.shape.rows, bits))?;
        let p = params(&[
            u(codes.shape.rows),
            u(codes.shape.cols),
            u(bits),
            0,
            (lambda as f32).to_bits(),
        ]);
        // One workgroup: the objective is a few thousand elements, and one group sums it
        // without a second pass.
        self.dispatch(
            &CSQ,
            &[],
            p,
            &[
                codes.raw(),
                targets.raw(),
                idx.raw(),
                grad.raw(),
                loss.raw(),
            ],
            [1, 1, 1],
        )?;
        Ok((loss, grad))
    }

    fn bank_objectives(
        &self,
        codes: &GpuBuf,
        bits: &[usize],
        labels: &GpuBuf,
        bank: &GpuBuf,
        bank_labels: &GpuBuf,
        loss: &BankLoss,
    ) -> Result<Vec<(GpuBuf, GpuBuf)>, KernelError> {
        bank_dims(
            codes.shape,
            bits,
            labels.shape,
            bank.shape,
            bank_labels.shape,
        )?;
        pairs_gpu::bank_objectives(self, codes, bits, labels, bank, bank_labels, loss)
    }

    fn dtsh_objective(
        &self,
        codes: &GpuBuf,
        bits: usize,
        labels: &GpuBuf,
        alpha: f64,
        lambda: f64,
    ) -> Result<(GpuBuf, GpuBuf), KernelError> {
        batch_dims("dtsh_objective", codes.shape, bits, labels.shape)?;
        pairs_gpu::dtsh_objective(self, codes, bits, labels, alpha, lambda)
    }

    fn hashnet_objective(
        &self,
        codes: &GpuBuf,
        bits: usize,
        labels: &GpuBuf,
        alpha: f64,
        scale: f64,
    ) -> Result<(GpuBuf, GpuBuf), KernelError> {
        batch_dims("hashnet_objective", codes.shape, bits, labels.shape)?;
        pairs_gpu::hashnet_objective(self, codes, bits, labels, alpha, scale)
    }

    fn prefix_pair_dots(
        &self,
        d: &GpuBuf,
        f: &GpuBuf,
        bits: &[usize],
    ) -> Result<GpuBuf, KernelError> {
        const OP: &str = "prefix_pair_dots";
        pair_dots_dims(d.shape, f.shape, bits)?;
        let k = bits.len();
        let pairs = k * (k + 1) / 2;
        let out = self.alloc(OP, Shape::new(1, pairs))?;
        // The block widths travel in an index vector (its first k words), uploaded once per
        // set of lengths: a training loop calls this every step with the same widths.
        let widths: Vec<u32> = bits.iter().map(|&b| u(b)).collect();
        let widths = self.constant_idx(&widths)?;
        let p = params(&[u(d.shape.rows), u(d.shape.cols), u(k)]);
        self.dispatch_rows(
            &PAIR_DOTS,
            p,
            &[d.raw(), f.raw(), widths.raw(), out.raw()],
            pairs,
        )?;
        Ok(out)
    }

    fn dominance_weights(
        &self,
        products: &GpuBuf,
        k: usize,
        beta: f32,
        _rule: WeightRule,
    ) -> Result<GpuBuf, KernelError> {
        const OP: &str = "dominance_weights";
        weights_dims(products.shape, k)?;
        // The rule's device twin (`dominance_weights` in loss.wgsl) evaluates it where the
        // products are, so the host function is never called and nothing is read back.
        let out = self.alloc(OP, Shape::new(1, k))?;
        let p = params(&[0, 0, u(k), 0, beta.to_bits()]);
        self.dispatch_rows(&DOMINANCE_WEIGHTS, p, &[products.raw(), out.raw()], 1)?;
        Ok(out)
    }

    fn sp_distill(
        &self,
        codes: &GpuBuf,
        student_bits: usize,
        teacher_bits: usize,
        eps: f32,
    ) -> Result<(GpuBuf, GpuBuf), KernelError> {
        const OP: &str = "sp_distill";
        sp_dims(codes.shape, student_bits, teacher_bits)?;
        let n = codes.shape.rows;
        let p = params(&[
            u(n),
            u(codes.shape.cols),
            u(student_bits),
            u(teacher_bits),
            eps.to_bits(),
        ]);
        // Student and teacher Grams stacked; then dA and the per-row sums.
        let grams = self.alloc(OP, Shape::new(2 * n, n))?;
        let work = self.alloc(OP, Shape::new(n + 1, n))?;
        let loss = self.alloc(OP, Shape::scalar())?;
        let grad = self.alloc(OP, Shape::new(n, student_bits))?;
        self.dispatch_1d(&SP_GRAM, &[], p, &[codes.raw(), grams.raw()], n * n)?;
        self.dispatch_rows(&SP_ROWS, p, &[grams.raw(), work.raw()], n)?;
        self.dispatch_1d(
            &SP_GRAD,
            &[],
            p,
            &[codes.raw(), work.raw(), grad.raw(), loss.raw()],
            n * student_bits,
        )?;
        Ok((loss, grad))
    }

    fn add_prefix_weighted(
        &self,
        out: &mut GpuBuf,
        start: usize,
        x: &GpuBuf,
        weights: &GpuBuf,
        index: usize,
    ) -> Result<(), KernelError> {
        weight_index_dims(weights.shape, index)?;
        let p = prefix_params("add_prefix_weighted", out.shape, start, x.shape, 0.0, index)?;
        out.ensure_unique("add_prefix_weighted", "out")?;
        self.dispatch_1d(
            &ADD_PREFIX_WEIGHTED,
            &[],
            p,
            &[x.raw(), weights.raw(), out.raw()],
            x.shape.len(),
        )
    }
}
