//! The CPU backend: the whole op set in plain Rust, parallel with rayon, generic over `f32` and
//! `f64`. It carries training on machines without a GPU, and it is the reference that every GPU
//! kernel is compared with (in `f64` for finite-difference checks).
//!
//! Results do not depend on the number of threads: work is split into fixed-size chunks and every
//! element is computed in the same order whatever the pool size, so a seeded run is bit-identical.

mod adam;
mod csq_row;
mod elementwise;
mod isa;
pub mod lanes;
pub mod scalar;

use std::marker::PhantomData;
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::{
    csq_dims, matmul_dims, pair_dots_dims, sp_dims, weight_index_dims, weights_dims, AdamStep,
    Backend, Binary, Reduce, Shape, Unary,
};
use crate::error::KernelError;
use crate::real::Real;

/// Below this many elements (or multiply-adds) an op runs on one thread: rayon's fork costs more.
const PAR_MIN: usize = 1 << 15;
/// Side of the square tiles of `C` that parallel matmul tasks compute.
const MATMUL_TILE: usize = 256;

/// The tile shape of `C` for an `m x k` by `k x n` product: [`MATMUL_TILE`] squares, except that a
/// product large enough to run in parallel but inside one square is cut in two along its longer
/// side (such as the hash layer's `64 x 1024 x 128` forward product), so that two threads share
/// it. The shape depends on the sizes alone, and no tiling changes a result: each element of `C`
/// is one gemm call's dot product over the full `k`, accumulated in the same order.
fn matmul_tiles(m: usize, k: usize, n: usize) -> (usize, usize) {
    let single = m <= MATMUL_TILE && n <= MATMUL_TILE;
    if !single || m * n * k < PAR_MIN * 8 {
        (MATMUL_TILE, MATMUL_TILE)
    } else if m >= n {
        (m.div_ceil(2), MATMUL_TILE)
    } else {
        (MATMUL_TILE, n.div_ceil(2))
    }
}

/// Evaluates `$body` with `$o` bound to `$op` rebuilt in each `match` arm, so that its variant
/// is a compile-time constant there: the per-element `match` of [`scalar`] then folds away and
/// every op gets its own vectorisable loop. Variants without data are `const` items rather than
/// captured values, so a closure over them is small enough to be inlined into the map's loop.
macro_rules! specialise_unary {
    ($op:expr, |$o:ident| $body:expr) => {
        match $op {
            Unary::Relu => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Relu;
                $body
            }
            Unary::Tanh => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Tanh;
                $body
            }
            Unary::Abs => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Abs;
                $body
            }
            Unary::Sign => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Sign;
                $body
            }
            Unary::Exp => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Exp;
                $body
            }
            Unary::Log => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Log;
                $body
            }
            Unary::Softplus => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Softplus;
                $body
            }
            Unary::LogCosh => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::LogCosh;
                $body
            }
            Unary::Square => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Square;
                $body
            }
            Unary::Sigmoid => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Sigmoid;
                $body
            }
            Unary::Scale(a) => {
                let $o = Unary::Scale(a);
                $body
            }
            Unary::AddScalar(c) => {
                let $o = Unary::AddScalar(c);
                $body
            }
            Unary::Clamp { lo, hi } => {
                let $o = Unary::Clamp { lo, hi };
                $body
            }
        }
    };
}

/// The output of a tiled matmul, shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct SharedOut<T>(*mut T);

// SAFETY: tasks only write disjoint tiles through the pointer (see `matmul`).
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above; no task reads what another writes.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// Pointer to element `offset`; taking it through a method makes closures capture the
    /// whole (Sync) wrapper rather than the raw pointer field.
    fn tile(self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

/// A CPU matrix: a shape and shared, copy-on-write storage.
#[derive(Clone, Debug)]
pub struct CpuBuf<T> {
    shape: Shape,
    data: Arc<Vec<T>>,
}

impl<T: Real> CpuBuf<T> {
    /// The elements, row-major.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    fn new(shape: Shape, data: Vec<T>) -> Self {
        debug_assert_eq!(shape.len(), data.len());
        Self {
            shape,
            data: Arc::new(data),
        }
    }

    fn at(&self, r: usize, c: usize) -> T {
        self.data[r * self.shape.cols + c]
    }

    /// The value broadcast onto position `(r, c)` of a larger matrix.
    fn broadcast_at(&self, r: usize, c: usize) -> T {
        self.at(r % self.shape.rows, c % self.shape.cols)
    }
}

/// Row indices on the CPU.
#[derive(Clone, Debug)]
pub struct CpuIdx(Arc<Vec<u32>>);

/// The CPU backend over element type `T` (`f32` for training, `f64` for reference checks).
#[derive(Clone, Debug, Default)]
pub struct CpuBackend<T> {
    _elem: PhantomData<T>,
}

impl<T: Real> CpuBackend<T> {
    /// A backend on rayon's global pool.
    pub fn new() -> Self {
        Self { _elem: PhantomData }
    }

    fn map(&self, x: &CpuBuf<T>, f: impl Fn(T) -> T + Sync + Send) -> CpuBuf<T> {
        CpuBuf::new(x.shape, elementwise::map(&x.data, f))
    }

    /// `out[i] = f(x[i], y[i])` for two buffers of one shape, in parallel when large.
    fn zip_map(
        &self,
        x: &CpuBuf<T>,
        y: &CpuBuf<T>,
        f: impl Fn(T, T) -> T + Sync + Send,
    ) -> CpuBuf<T> {
        CpuBuf::new(x.shape, elementwise::zip_map(&x.data, &y.data, f))
    }

    /// `out[i] = f(i)` over a shape, in parallel when large.
    fn generate(&self, shape: Shape, f: impl Fn(usize, usize) -> T + Sync + Send) -> CpuBuf<T> {
        let cols = shape.cols.max(1);
        let out = if shape.len() >= PAR_MIN {
            (0..shape.len())
                .into_par_iter()
                .map(|i| f(i / cols, i % cols))
                .collect()
        } else {
            (0..shape.len()).map(|i| f(i / cols, i % cols)).collect()
        };
        CpuBuf::new(shape, out)
    }
}

fn same_shape(op: &'static str, a: Shape, b: Shape) -> Result<(), KernelError> {
    if a == b {
        Ok(())
    } else {
        Err(KernelError::Shape {
            op,
            detail: format!("{a} vs {b}, expected equal shapes"),
        })
    }
}

fn check_broadcast(op: &'static str, a: Shape, b: Shape) -> Result<(), KernelError> {
    if a.accepts_broadcast(b) {
        Ok(())
    } else {
        Err(KernelError::Shape {
            op,
            detail: format!(
                "{b} does not broadcast onto {a} (expected {a}, [1, {}], [{}, 1] or [1, 1])",
                a.cols, a.rows
            ),
        })
    }
}

fn check_indices(op: &'static str, idx: &[u32], rows: usize) -> Result<(), KernelError> {
    match idx.iter().find(|&&i| i as usize >= rows) {
        Some(&index) => Err(KernelError::Index { op, index, rows }),
        None => Ok(()),
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    type Elem = T;
    type Buf = CpuBuf<T>;
    type Idx = CpuIdx;

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn shape(&self, x: &CpuBuf<T>) -> Shape {
        x.shape
    }

    fn upload(&self, data: &[T], shape: Shape) -> Result<CpuBuf<T>, KernelError> {
        if data.len() != shape.len() {
            return Err(KernelError::Length {
                op: "upload",
                shape,
                expected: shape.len(),
                got: data.len(),
            });
        }
        Ok(CpuBuf::new(shape, data.to_vec()))
    }

    fn write(&self, dst: &mut CpuBuf<T>, data: &[T]) -> Result<(), KernelError> {
        if data.len() != dst.shape.len() {
            return Err(KernelError::Length {
                op: "write",
                shape: dst.shape,
                expected: dst.shape.len(),
                got: data.len(),
            });
        }
        Arc::make_mut(&mut dst.data).copy_from_slice(data);
        Ok(())
    }

    fn download(&self, x: &CpuBuf<T>) -> Result<Vec<T>, KernelError> {
        Ok(x.data.to_vec())
    }

    fn fill(&self, shape: Shape, value: f32) -> Result<CpuBuf<T>, KernelError> {
        Ok(CpuBuf::new(
            shape,
            vec![T::from_f64(value as f64); shape.len()],
        ))
    }

    fn upload_idx(&self, idx: &[u32]) -> Result<CpuIdx, KernelError> {
        Ok(CpuIdx(Arc::new(idx.to_vec())))
    }

    fn idx_len(&self, idx: &CpuIdx) -> usize {
        idx.0.len()
    }

    fn sync(&self) -> Result<(), KernelError> {
        Ok(())
    }

    /// Every op computes in the calling thread or on rayon's pool, and shares no state with
    /// other calls.
    fn parallel_calls(&self) -> bool {
        true
    }

    fn matmul(
        &self,
        a: &CpuBuf<T>,
        trans_a: bool,
        b: &CpuBuf<T>,
        trans_b: bool,
        bias: Option<&CpuBuf<T>>,
    ) -> Result<CpuBuf<T>, KernelError> {
        let (m, k, n) = matmul_dims(a.shape, trans_a, b.shape, trans_b, bias.map(|b| b.shape))?;
        // Element strides of op(A) (m x k) and op(B) (k x n) inside their row-major storage.
        let (rsa, csa) = if trans_a {
            (1, a.shape.cols as isize)
        } else {
            (a.shape.cols as isize, 1)
        };
        let (rsb, csb) = if trans_b {
            (1, b.shape.cols as isize)
        } else {
            (b.shape.cols as isize, 1)
        };
        // With k = 0 the product is all zeros; otherwise every element is written by exactly one
        // gemm call with beta = 0, which never reads C, so the buffer needs no zero fill.
        let mut out: Vec<T> = if k == 0 {
            vec![T::zero(); m * n]
        } else {
            Vec::with_capacity(m * n)
        };
        if k > 0 && n > 0 && m > 0 {
            // Tiles of C: each element is computed by exactly one gemm call over the full k, so
            // the result does not depend on how tiles are spread over threads. Column tiles keep
            // small-batch products parallel without packing all of op(B) once per row chunk.
            let (tile_rows, tile_cols) = matmul_tiles(m, k, n);
            let tiles: Vec<(usize, usize)> = (0..m.div_ceil(tile_rows))
                .flat_map(|i| {
                    (0..n.div_ceil(tile_cols)).map(move |j| (i * tile_rows, j * tile_cols))
                })
                .collect();
            let c = SharedOut(out.spare_capacity_mut().as_mut_ptr().cast::<T>());
            let task = |&(row0, col0): &(usize, usize)| {
                let rows = tile_rows.min(m - row0);
                let cols = tile_cols.min(n - col0);
                // SAFETY: op(A) rows row0..row0+rows, op(B) columns col0..col0+cols and the C tile
                // lie inside their buffers for these strides (checked by matmul_dims); tiles are
                // disjoint, so no two tasks write the same element of C.
                unsafe {
                    T::gemm(
                        rows,
                        k,
                        cols,
                        a.data.as_ptr().offset(row0 as isize * rsa),
                        rsa,
                        csa,
                        b.data.as_ptr().offset(col0 as isize * csb),
                        rsb,
                        csb,
                        c.tile(row0 * n + col0),
                        n as isize,
                        1,
                    )
                }
            };
            if m * n * k >= PAR_MIN * 8 && tiles.len() > 1 {
                tiles.par_iter().for_each(task);
            } else {
                tiles.iter().for_each(task);
            }
        }
        if k > 0 {
            // SAFETY: the tiles cover all m x n elements of the capacity and each gemm call wrote
            // its tile (beta = 0 overwrites C), so every element is initialised.
            unsafe { out.set_len(m * n) };
        }
        if let Some(bias) = bias {
            for row in out.chunks_mut(n.max(1)) {
                for (o, &bv) in row.iter_mut().zip(bias.data.iter()) {
                    *o += bv;
                }
            }
        }
        Ok(CpuBuf::new(Shape::new(m, n), out))
    }

    fn unary(&self, op: Unary, x: &CpuBuf<T>) -> Result<CpuBuf<T>, KernelError> {
        Ok(specialise_unary!(op, |o| self.map(x, move |v| scalar::unary(o, v))))
    }

    fn unary_bwd(
        &self,
        op: Unary,
        x: &CpuBuf<T>,
        dy: &CpuBuf<T>,
    ) -> Result<CpuBuf<T>, KernelError> {
        same_shape("unary_bwd", x.shape, dy.shape)?;
        Ok(specialise_unary!(op, |o| self.zip_map(
            x,
            dy,
            move |x, dy| dy * scalar::unary_grad(o, x)
        )))
    }

    fn binary(&self, op: Binary, a: &CpuBuf<T>, b: &CpuBuf<T>) -> Result<CpuBuf<T>, KernelError> {
        check_broadcast("binary", a.shape, b.shape)?;
        if a.shape == b.shape {
            return Ok(self.zip_map(a, b, |x, y| scalar::binary(op, x, y)));
        }
        Ok(self.generate(a.shape, |r, c| {
            scalar::binary(op, a.at(r, c), b.broadcast_at(r, c))
        }))
    }

    fn binary_bwd(
        &self,
        op: Binary,
        a: &CpuBuf<T>,
        b: &CpuBuf<T>,
        dy: &CpuBuf<T>,
    ) -> Result<(CpuBuf<T>, CpuBuf<T>), KernelError> {
        check_broadcast("binary_bwd", a.shape, b.shape)?;
        same_shape("binary_bwd", a.shape, dy.shape)?;
        let partial = |which: usize| {
            self.generate(a.shape, move |r, c| {
                let (ga, gb) = scalar::binary_grad(op, a.at(r, c), b.broadcast_at(r, c));
                dy.at(r, c) * if which == 0 { ga } else { gb }
            })
        };
        Ok((partial(0), partial(1)))
    }

    fn reduce(&self, op: Reduce, x: &CpuBuf<T>) -> Result<CpuBuf<T>, KernelError> {
        let Shape { rows, cols } = x.shape;
        Ok(match op {
            Reduce::All => {
                // Fixed-size chunks summed in order keep the result independent of the pool.
                // Small inputs skip rayon (one chunk either way, so the sum is the same).
                let chunk_sum = |c: &[T]| c.iter().copied().sum::<T>();
                let partials: Vec<T> = if x.data.len() > PAR_MIN {
                    x.data.par_chunks(PAR_MIN).map(chunk_sum).collect()
                } else {
                    vec![chunk_sum(&x.data)]
                };
                CpuBuf::new(Shape::scalar(), vec![partials.into_iter().sum()])
            }
            Reduce::RowSums => self.generate(Shape::new(rows, 1), |r, _| {
                (0..cols).map(|c| x.at(r, c)).sum()
            }),
            Reduce::ColSums => {
                // Row by row keeps memory access contiguous; each column still sums in row order.
                let mut acc = vec![T::zero(); cols];
                for row in x.data.chunks(cols.max(1)) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                CpuBuf::new(Shape::new(1, cols), acc)
            }
        })
    }

    fn row_normalize(&self, x: &CpuBuf<T>, eps: f32) -> Result<CpuBuf<T>, KernelError> {
        let eps = T::from_f64(eps as f64);
        let norms = row_norms(x);
        Ok(self.generate(x.shape, |r, c| x.at(r, c) / norms[r].max(eps)))
    }

    fn row_normalize_bwd(
        &self,
        x: &CpuBuf<T>,
        dy: &CpuBuf<T>,
        eps: f32,
    ) -> Result<CpuBuf<T>, KernelError> {
        same_shape("row_normalize_bwd", x.shape, dy.shape)?;
        let eps = T::from_f64(eps as f64);
        let cols = x.shape.cols;
        let norms = row_norms(x);
        // <y_i, dy_i> with y_i = x_i / n_i, per row.
        let dots: Vec<T> = (0..x.shape.rows)
            .map(|r| (0..cols).map(|c| x.at(r, c) * dy.at(r, c)).sum::<T>() / norms[r].max(eps))
            .collect();
        Ok(self.generate(x.shape, |r, c| {
            let n = norms[r];
            if n > eps {
                (dy.at(r, c) - x.at(r, c) / n * dots[r]) / n
            } else {
                dy.at(r, c) / eps
            }
        }))
    }

    fn slice_cols(
        &self,
        x: &CpuBuf<T>,
        start: usize,
        len: usize,
    ) -> Result<CpuBuf<T>, KernelError> {
        if start + len > x.shape.cols {
            return Err(KernelError::Shape {
                op: "slice_cols",
                detail: format!("columns {start}..{} of {}", start + len, x.shape),
            });
        }
        let cols = x.shape.cols;
        let out = x
            .data
            .chunks(cols.max(1))
            .flat_map(|row| row[start..start + len].iter().copied())
            .collect();
        Ok(CpuBuf::new(Shape::new(x.shape.rows, len), out))
    }

    fn add_prefix_scaled(
        &self,
        out: &mut CpuBuf<T>,
        start: usize,
        x: &CpuBuf<T>,
        alpha: f32,
    ) -> Result<(), KernelError> {
        add_prefix(
            "add_prefix_scaled",
            out,
            start,
            x,
            T::from_f64(alpha as f64),
        )
    }

    fn add_prefix_weighted(
        &self,
        out: &mut CpuBuf<T>,
        start: usize,
        x: &CpuBuf<T>,
        weights: &CpuBuf<T>,
        index: usize,
    ) -> Result<(), KernelError> {
        weight_index_dims(weights.shape, index)?;
        add_prefix("add_prefix_weighted", out, start, x, weights.data[index])
    }

    fn gather_rows(&self, table: &CpuBuf<T>, idx: &CpuIdx) -> Result<CpuBuf<T>, KernelError> {
        check_indices("gather_rows", &idx.0, table.shape.rows)?;
        let cols = table.shape.cols;
        let out = idx
            .0
            .iter()
            .flat_map(|&r| {
                table.data[r as usize * cols..(r as usize + 1) * cols]
                    .iter()
                    .copied()
            })
            .collect();
        Ok(CpuBuf::new(Shape::new(idx.0.len(), cols), out))
    }

    fn scatter_add_rows(
        &self,
        src: &CpuBuf<T>,
        idx: &CpuIdx,
        table_rows: usize,
    ) -> Result<CpuBuf<T>, KernelError> {
        if idx.0.len() != src.shape.rows {
            return Err(KernelError::Shape {
                op: "scatter_add_rows",
                detail: format!("{} indices for {} source rows", idx.0.len(), src.shape),
            });
        }
        check_indices("scatter_add_rows", &idx.0, table_rows)?;
        let cols = src.shape.cols;
        let mut out = vec![T::zero(); table_rows * cols];
        for (i, &r) in idx.0.iter().enumerate() {
            for c in 0..cols {
                out[r as usize * cols + c] += src.at(i, c);
            }
        }
        Ok(CpuBuf::new(Shape::new(table_rows, cols), out))
    }

    fn set_rows(
        &self,
        table: &mut CpuBuf<T>,
        idx: &CpuIdx,
        src: &CpuBuf<T>,
    ) -> Result<(), KernelError> {
        if idx.0.len() != src.shape.rows || src.shape.cols != table.shape.cols {
            return Err(KernelError::Shape {
                op: "set_rows",
                detail: format!(
                    "{} indices and source {} for table {}",
                    idx.0.len(),
                    src.shape,
                    table.shape
                ),
            });
        }
        check_indices("set_rows", &idx.0, table.shape.rows)?;
        let cols = src.shape.cols;
        let data = Arc::make_mut(&mut table.data);
        for (i, &r) in idx.0.iter().enumerate() {
            data[r as usize * cols..(r as usize + 1) * cols]
                .copy_from_slice(&src.data[i * cols..(i + 1) * cols]);
        }
        Ok(())
    }

    fn adam_step(
        &self,
        param: &mut CpuBuf<T>,
        grad: &CpuBuf<T>,
        m: &mut CpuBuf<T>,
        v: &mut CpuBuf<T>,
        step: AdamStep,
    ) -> Result<(), KernelError> {
        same_shape("adam_step", param.shape, grad.shape)?;
        same_shape("adam_step", param.shape, m.shape)?;
        same_shape("adam_step", param.shape, v.shape)?;
        let f = |x: f32| T::from_f64(x as f64);
        let consts = adam::AdamConsts {
            lr: f(step.lr),
            beta1: f(step.beta1),
            beta2: f(step.beta2),
            eps: f(step.eps),
            weight_decay: f(step.weight_decay),
            bias1: f(step.bias1),
            bias2: f(step.bias2),
        };
        let p = Arc::make_mut(&mut param.data);
        let m = Arc::make_mut(&mut m.data);
        let v = Arc::make_mut(&mut v.data);
        // Fixed chunks: the update is elementwise, so the chunking does not change results.
        let update = |((p, m), (v, g)): AdamChunk<'_, T>| adam::adam_update(consts, p, m, v, g);
        let chunk = PAR_MIN;
        if p.len() >= PAR_MIN {
            p.par_chunks_mut(chunk)
                .zip(m.par_chunks_mut(chunk))
                .zip(v.par_chunks_mut(chunk).zip(grad.data.par_chunks(chunk)))
                .for_each(update);
        } else {
            update(((p, m), (v, &grad.data[..])));
        }
        Ok(())
    }
    fn csq_objective(
        &self,
        u: &CpuBuf<T>,
        bits: usize,
        targets: &CpuBuf<T>,
        idx: &CpuIdx,
        lambda: f64,
    ) -> Result<(CpuBuf<T>, CpuBuf<T>), KernelError> {
        csq_dims(u.shape, bits, targets.shape, idx.0.len())?;
        check_indices("csq_objective", &idx.0, targets.shape.rows)?;
        let (n, width) = (u.shape.rows, u.shape.cols);
        let lambda = T::from_f64(lambda);
        let inv = T::one() / T::from_f64((n * bits) as f64);
        let mut grad = vec![T::zero(); n * bits];
        // Per-element BCE and quantisation terms, summed after the vector pass.
        let mut terms = vec![T::zero(); 2 * n * bits];
        let (bce_terms, quant_terms) = terms.split_at_mut(n * bits);
        let batch = csq_row::CsqBatch {
            u: &u.data,
            width,
            targets: &targets.data,
            idx: &idx.0,
            bits,
            lambda,
            inv,
        };
        let terms = csq_row::CsqTerms {
            grad: &mut grad,
            bce: bce_terms,
            quant: quant_terms,
        };
        csq_row::csq_rows(&batch, terms);
        // Serial and in row-major order: the sums match the tape's mean over the same elements.
        let (mut bce, mut quant) = (T::zero(), T::zero());
        for (&b, &q) in bce_terms.iter().zip(quant_terms.iter()) {
            bce += b;
            quant += q;
        }
        let loss = bce * inv + lambda * (quant * inv);
        Ok((
            CpuBuf::new(Shape::scalar(), vec![loss]),
            CpuBuf::new(Shape::new(n, bits), grad),
        ))
    }

    fn prefix_pair_dots(
        &self,
        d: &CpuBuf<T>,
        f: &CpuBuf<T>,
        bits: &[usize],
    ) -> Result<CpuBuf<T>, KernelError> {
        pair_dots_dims(d.shape, f.shape, bits)?;
        let cols = d.shape.cols;
        let offsets: Vec<usize> = bits
            .iter()
            .scan(0, |o, &b| {
                *o += b;
                Some(*o - b)
            })
            .collect();
        let mut out = Vec::with_capacity(bits.len() * (bits.len() + 1) / 2);
        for i in 0..bits.len() {
            for j in i..bits.len() {
                let (oi, oj, b) = (offsets[i], offsets[j], bits[i]);
                let dot = d
                    .data
                    .chunks(cols)
                    .zip(f.data.chunks(cols))
                    .map(|(dr, fr)| {
                        dr[oi..oi + b]
                            .iter()
                            .zip(&fr[oj..oj + b])
                            .map(|(&x, &y)| x * y)
                            .sum::<T>()
                    })
                    .sum::<T>();
                out.push(dot);
            }
        }
        Ok(CpuBuf::new(Shape::new(1, out.len()), out))
    }

    fn dominance_weights(
        &self,
        products: &CpuBuf<T>,
        k: usize,
        beta: f32,
    ) -> Result<CpuBuf<T>, KernelError> {
        weights_dims(products.shape, k)?;
        let values: Vec<f64> = products.data.iter().map(|v| v.to_f64()).collect();
        let weights = scalar::dominance_weights(&values, k, beta as f64)
            .into_iter()
            .map(T::from_f64)
            .collect();
        Ok(CpuBuf::new(Shape::new(1, k), weights))
    }

    fn sp_distill(
        &self,
        u: &CpuBuf<T>,
        student_bits: usize,
        teacher_bits: usize,
        eps: f32,
    ) -> Result<(CpuBuf<T>, CpuBuf<T>), KernelError> {
        sp_dims(u.shape, student_bits, teacher_bits)?;
        let (n, width) = (u.shape.rows, u.shape.cols);
        let eps = T::from_f64(eps as f64);
        let ws = width as isize;
        // The prefix Gram U[:, :b] U[:, :b]^T, read in place through the strides.
        let prefix_gram = |b: usize| {
            let mut g = vec![T::zero(); n * n];
            // SAFETY: A is the n x b prefix of u (row stride `width`, b <= width), B its transpose
            // (row stride 1, column stride `width`), C an n x n buffer.
            unsafe {
                T::gemm(
                    n,
                    b,
                    n,
                    u.data.as_ptr(),
                    ws,
                    1,
                    u.data.as_ptr(),
                    1,
                    ws,
                    g.as_mut_ptr(),
                    n as isize,
                    1,
                )
            };
            g
        };
        let (a, gt) = (prefix_gram(student_bits), prefix_gram(teacher_bits));
        let scale = T::one() / T::from_f64((n * n) as f64);
        let norm = |row: &[T]| row.iter().map(|&v| v * v).sum::<T>().sqrt();
        let mut total = T::zero();
        let mut da = vec![T::zero(); n * n];
        let mut y = vec![T::zero(); n];
        let mut dy = vec![T::zero(); n];
        for ((a_row, t_row), da_row) in a.chunks(n).zip(gt.chunks(n)).zip(da.chunks_mut(n)) {
            let (ns, nt) = (norm(a_row), norm(t_row));
            let (ds, dt) = (ns.max(eps), nt.max(eps));
            let mut dot = T::zero();
            for (((yq, dyq), &aq), &tq) in y.iter_mut().zip(dy.iter_mut()).zip(a_row).zip(t_row) {
                *yq = aq / ds;
                let diff = tq / dt - *yq;
                total += diff * diff;
                *dyq = -T::from_f64(2.0) * diff * scale;
                dot += *yq * *dyq;
            }
            for ((d, &yq), &dyq) in da_row.iter_mut().zip(&y).zip(&dy) {
                *d = if ns > eps {
                    (dyq - yq * dot) / ns
                } else {
                    dyq / eps
                };
            }
        }
        // dS = (dA + dA^T) S.
        let mut sym = vec![T::zero(); n * n];
        for (p, row) in sym.chunks_exact_mut(n).enumerate() {
            for (q, v) in row.iter_mut().enumerate() {
                *v = da[p * n + q] + da[q * n + p];
            }
        }
        let mut grad = vec![T::zero(); n * student_bits];
        // SAFETY: sym is n x n, S the n x student_bits prefix of u (row stride `width`), the
        // output n x student_bits.
        unsafe {
            T::gemm(
                n,
                n,
                student_bits,
                sym.as_ptr(),
                n as isize,
                1,
                u.data.as_ptr(),
                ws,
                1,
                grad.as_mut_ptr(),
                student_bits as isize,
                1,
            )
        };
        Ok((
            CpuBuf::new(Shape::scalar(), vec![total * scale]),
            CpuBuf::new(Shape::new(n, student_bits), grad),
        ))
    }
}

/// Matching chunks of a parameter, its two moments and its gradient.
/// `out[:, start .. start + x.cols] += alpha * x` (`op` names the caller in the shape error).
fn add_prefix<T: Real>(
    op: &'static str,
    out: &mut CpuBuf<T>,
    start: usize,
    x: &CpuBuf<T>,
    alpha: T,
) -> Result<(), KernelError> {
    if x.shape.rows != out.shape.rows || start + x.shape.cols > out.shape.cols {
        return Err(KernelError::Shape {
            op,
            detail: format!(
                "{} at column {start} does not fit in {}",
                x.shape, out.shape
            ),
        });
    }
    let cols = out.shape.cols;
    let data = Arc::make_mut(&mut out.data);
    for (r, row) in data.chunks_mut(cols.max(1)).enumerate() {
        for c in 0..x.shape.cols {
            row[start + c] += alpha * x.at(r, c);
        }
    }
    Ok(())
}

type AdamChunk<'a, T> = ((&'a mut [T], &'a mut [T]), (&'a mut [T], &'a [T]));

fn row_norms<T: Real>(x: &CpuBuf<T>) -> Vec<T> {
    (0..x.shape.rows)
        .map(|r| {
            (0..x.shape.cols)
                .map(|c| x.at(r, c) * x.at(r, c))
                .sum::<T>()
                .sqrt()
        })
        .collect()
}

// After `specialise_unary!`, which the checks use to build each op's loop as the backend does.
#[cfg(test)]
mod isa_bits;
