//! The CPU backend: the whole op set in plain Rust, parallel with rayon, generic over `f32` and
//! `f64`. It carries training on machines without a GPU, and it is the reference that every GPU
//! kernel is compared with (in `f64` for finite-difference checks).
//!
//! Results do not depend on the number of threads: work is split into fixed-size chunks and every
//! element is computed in the same order whatever the pool size, so a seeded run is bit-identical.

mod adam;
mod elementwise;
pub(crate) mod fma_products;
mod fused_matmul;
pub(crate) mod isa;
pub mod lanes;
pub mod scalar;

use std::marker::PhantomData;
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::{matmul_dims, AdamStep, Backend, Binary, Reduce, Shape, Unary};
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

/// Adds `bias` (one value per column) to every row of the `n`-column `out`.
fn add_bias<T: Real>(out: &mut [T], n: usize, bias: Option<&CpuBuf<T>>) {
    if let Some(bias) = bias {
        for row in out.chunks_mut(n.max(1)) {
            for (o, &bv) in row.iter_mut().zip(bias.data.iter()) {
                *o += bv;
            }
        }
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
            Unary::Sqrt => {
                #[allow(non_upper_case_globals)]
                const $o: Unary = Unary::Sqrt;
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

/// A CPU matrix: a shape and shared storage. Cloning shares the storage, as a GPU handle shares
/// device memory; an in-place op refuses a handle whose storage is shared.
#[derive(Clone, Debug)]
pub struct CpuBuf<T> {
    pub(crate) shape: Shape,
    pub(crate) data: Arc<Vec<T>>,
}

impl<T: Real> CpuBuf<T> {
    /// The elements, row-major.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    pub(crate) fn new(shape: Shape, data: Vec<T>) -> Self {
        debug_assert_eq!(shape.len(), data.len());
        Self {
            shape,
            data: Arc::new(data),
        }
    }

    /// The elements, for an in-place update by `op` of its operand `operand`: only when this is
    /// the only handle to the storage. A shared handle is refused rather than copied, so that a
    /// caller that keeps a clone across an in-place op fails here as it would on the GPU, where
    /// the clone would see the write.
    pub(crate) fn unique_mut(
        &mut self,
        op: &'static str,
        operand: &'static str,
    ) -> Result<&mut [T], KernelError> {
        Arc::get_mut(&mut self.data)
            .map(Vec::as_mut_slice)
            .ok_or(KernelError::SharedBuffer { op, operand })
    }

    pub(crate) fn at(&self, r: usize, c: usize) -> T {
        self.data[r * self.shape.cols + c]
    }

    /// The value broadcast onto position `(r, c)` of a larger matrix.
    /// Only `[1, cols]`, `[rows, 1]` and `[1, 1]` broadcast ([`check_broadcast`]), so a
    /// dimension of 1 reads index 0 and any other the index itself (no integer division).
    fn broadcast_at(&self, r: usize, c: usize) -> T {
        let r = if self.shape.rows == 1 { 0 } else { r };
        let c = if self.shape.cols == 1 { 0 } else { c };
        self.at(r, c)
    }
}

/// Row indices on the CPU.
#[derive(Clone, Debug)]
pub struct CpuIdx(pub(crate) Arc<Vec<u32>>);

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

    /// `out[r, c] = f(r, c)` over a shape, row by row (in parallel when large).
    fn generate(&self, shape: Shape, f: impl Fn(usize, usize) -> T + Sync + Send) -> CpuBuf<T> {
        let mut out = vec![T::zero(); shape.len()];
        let fill = |(r, row): (usize, &mut [T])| {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f(r, c);
            }
        };
        if shape.cols > 0 {
            if shape.len() >= PAR_MIN {
                out.par_chunks_mut(shape.cols).enumerate().for_each(fill);
            } else {
                out.chunks_mut(shape.cols).enumerate().for_each(fill);
            }
        }
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

pub(crate) fn check_indices(op: &'static str, idx: &[u32], rows: usize) -> Result<(), KernelError> {
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
        dst.unique_mut("write", "dst")?.copy_from_slice(data);
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
        let fused = fma_products::Fused::detect()
            .filter(|_| k > 0 && m > 0 && n > 0 && fused_matmul::applies(m, trans_b));
        if let Some(isa) = fused {
            let mut out = vec![T::zero(); m * n];
            fused_matmul::matmul(
                isa,
                fused_matmul::Operand::new(a, trans_a),
                fused_matmul::Operand::new(b, trans_b),
                (m, k, n),
                &mut out,
                m * n * k >= PAR_MIN * 8,
            );
            add_bias(&mut out, n, bias);
            return Ok(CpuBuf::new(Shape::new(m, n), out));
        }
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
        add_bias(&mut out, n, bias);
        Ok(CpuBuf::new(Shape::new(m, n), out))
    }

    fn unary(&self, op: Unary, x: &CpuBuf<T>) -> Result<CpuBuf<T>, KernelError> {
        // An op with a parameter is rebuilt inside its closure, which then captures only the
        // parameter: the variant is known there and the rule's `match` folds away (a captured
        // `Unary` would be matched again for every element).
        Ok(match op {
            Unary::Scale(a) => self.map(x, move |v| scalar::unary(Unary::Scale(a), v)),
            Unary::AddScalar(c) => self.map(x, move |v| scalar::unary(Unary::AddScalar(c), v)),
            Unary::Clamp { lo, hi } => {
                self.map(x, move |v| scalar::unary(Unary::Clamp { lo, hi }, v))
            }
            _ => specialise_unary!(op, |o| self.map(x, move |v| scalar::unary(o, v))),
        })
    }

    fn unary_bwd(
        &self,
        op: Unary,
        x: &CpuBuf<T>,
        dy: &CpuBuf<T>,
    ) -> Result<CpuBuf<T>, KernelError> {
        same_shape("unary_bwd", x.shape, dy.shape)?;
        // As in `unary`, an op with a parameter is rebuilt inside its closure.
        let grad = |o: Unary, x: T, dy: T| dy * scalar::unary_grad(o, x);
        Ok(match op {
            Unary::Scale(a) => self.zip_map(x, dy, move |x, dy| grad(Unary::Scale(a), x, dy)),
            Unary::AddScalar(c) => {
                self.zip_map(x, dy, move |x, dy| grad(Unary::AddScalar(c), x, dy))
            }
            Unary::Clamp { lo, hi } => {
                self.zip_map(x, dy, move |x, dy| grad(Unary::Clamp { lo, hi }, x, dy))
            }
            _ => specialise_unary!(op, |o| self.zip_map(x, dy, move |x, dy| grad(o, x, dy))),
        })
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
        if a.shape == b.shape {
            // Element by element, both partials from one evaluation of the rule.
            let n = a.data.len();
            let (mut da, mut db) = (vec![T::zero(); n], vec![T::zero(); n]);
            let part = |k: usize, (da, db): (&mut [T], &mut [T])| {
                let at = k * PAR_MIN;
                let (a, b, dy) = (&a.data[at..], &b.data[at..], &dy.data[at..]);
                for ((((va, vb), &x), &y), &d) in da.iter_mut().zip(db).zip(a).zip(b).zip(dy) {
                    let (ga, gb) = scalar::binary_grad(op, x, y);
                    *va = d * ga;
                    *vb = d * gb;
                }
            };
            if n >= PAR_MIN {
                da.par_chunks_mut(PAR_MIN)
                    .zip(db.par_chunks_mut(PAR_MIN))
                    .enumerate()
                    .for_each(|(k, out)| part(k, out));
            } else {
                part(0, (&mut da, &mut db));
            }
            return Ok((CpuBuf::new(a.shape, da), CpuBuf::new(a.shape, db)));
        }
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
        let data = table.unique_mut("set_rows", "table")?;
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
        let p = param.unique_mut("adam_step", "param")?;
        let m = m.unique_mut("adam_step", "m")?;
        let v = v.unique_mut("adam_step", "v")?;
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
}

/// `out[:, start .. start + x.cols] += alpha * x` in place (`op` names the caller in errors).
pub(crate) fn add_prefix<T: Real>(
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
    let data = out.unique_mut(op, "out")?;
    for (r, row) in data.chunks_mut(cols.max(1)).enumerate() {
        for c in 0..x.shape.cols {
            row[start + c] += alpha * x.at(r, c);
        }
    }
    Ok(())
}

/// Matching chunks of a parameter, its two moments and its gradient.
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
