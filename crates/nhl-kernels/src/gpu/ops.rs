//! [`Backend`] for [`GpuBackend`]: host-side checks (shapes, index ranges) so that every misuse
//! is a typed error before anything is recorded, then one or two dispatches per op.

use std::sync::Arc;

use super::context::{Access, Kernel};
use super::pool::{index_layout, Kind};
use super::{grid, GpuBackend, GpuBuf, GpuIdx};
use crate::backend::{matmul_dims, AdamStep, Backend, Binary, Reduce, Shape, Unary};
use crate::error::KernelError;
use crate::shaders::{binary_code, unary_code, Shader};

use Access::{Read as R, ReadWrite as W};

/// A [`Kernel`] entry, in a form short enough for the tables of statics.
pub(crate) const fn kernel(
    shader: Shader,
    entry: &'static str,
    bindings: &'static [(u32, Access)],
    overrides: &'static [&'static str],
) -> Kernel {
    Kernel {
        shader,
        entry,
        bindings,
        overrides,
    }
}

// Binding numbers follow the `@binding` of each shader's globals.
static MATMUL: Kernel = kernel(
    Shader::Matmul,
    "matmul",
    &[(1, R), (2, R), (3, R), (4, W)],
    &["TRANS_A", "TRANS_B", "HAS_BIAS"],
);
static UNARY: Kernel = kernel(Shader::Elementwise, "unary", &[(1, R), (4, W)], &["OP"]);
static UNARY_BWD: Kernel = kernel(
    Shader::Elementwise,
    "unary_bwd",
    &[(1, R), (3, R), (4, W)],
    &["OP"],
);
static BINARY: Kernel = kernel(
    Shader::Elementwise,
    "binary",
    &[(1, R), (2, R), (4, W)],
    &["OP"],
);
static BINARY_BWD: Kernel = kernel(
    Shader::Elementwise,
    "binary_bwd",
    &[(1, R), (2, R), (3, R), (4, W), (5, W)],
    &["OP"],
);
static FILL: Kernel = kernel(Shader::Elementwise, "fill", &[(4, W)], &[]);
static SUM_PARTIAL: Kernel = kernel(Shader::Reduce, "sum_partial", &[(1, R), (2, W)], &[]);
static ROW_SUMS: Kernel = kernel(Shader::Reduce, "row_sums", &[(1, R), (2, W)], &[]);
static COL_SUMS: Kernel = kernel(Shader::Reduce, "col_sums", &[(1, R), (2, W)], &[]);
static ROW_NORMALIZE: Kernel = kernel(Shader::Rows, "row_normalize", &[(1, R), (4, W)], &[]);
static ROW_NORMALIZE_BWD: Kernel = kernel(
    Shader::Rows,
    "row_normalize_bwd",
    &[(1, R), (2, R), (4, W)],
    &[],
);
static SLICE_COLS: Kernel = kernel(Shader::Rows, "slice_cols", &[(1, R), (4, W)], &[]);
static ADD_PREFIX: Kernel = kernel(Shader::Rows, "add_prefix", &[(1, R), (4, W)], &[]);
static GATHER_ROWS: Kernel = kernel(Shader::Rows, "gather_rows", &[(1, R), (3, R), (4, W)], &[]);
static SCATTER_ADD_ROWS: Kernel = kernel(
    Shader::Rows,
    "scatter_add_rows",
    &[(1, R), (3, R), (4, W)],
    &[],
);
static SET_ROWS: Kernel = kernel(Shader::Rows, "set_rows", &[(1, R), (3, R), (4, W)], &[]);
static ADAM: Kernel = kernel(
    Shader::Adam,
    "adam_step",
    &[(1, R), (2, W), (3, W), (4, W)],
    &[],
);

/// Side of the square output block of one matmul workgroup.
const MATMUL_TILE: usize = 64;
/// Elements one workgroup of the first `sum_partial` pass covers at least.
const SUM_CHUNK: usize = 1024;
/// Most workgroups of the first pass, so the second pass is one workgroup over few partials.
const SUM_GROUPS: usize = 256;
/// Columns one `col_sums` workgroup covers.
const COL_SUMS_COLS: usize = 16;

fn same_shape(op: &'static str, what: &str, want: Shape, got: Shape) -> Result<(), KernelError> {
    if want == got {
        Ok(())
    } else {
        Err(KernelError::Shape {
            op,
            detail: format!("{what} is {got}, expected {want}"),
        })
    }
}

pub(crate) fn check_index(op: &'static str, idx: &GpuIdx, rows: usize) -> Result<(), KernelError> {
    match idx.max {
        Some(index) if index as usize >= rows => Err(KernelError::Index { op, index, rows }),
        _ => Ok(()),
    }
}

/// Packs a parameter block: the u32 fields, then the f32 fields by bit pattern, in WGSL order.
pub(crate) fn params(words: &[u32]) -> [u32; 8] {
    let mut p = [0; 8];
    p[..words.len()].copy_from_slice(words);
    p
}

/// A count as the `u32` of a parameter block.
pub(crate) fn u(n: usize) -> u32 {
    // Every count is bounded by a buffer that fit the device's binding limit (< 2^32 bytes).
    n as u32
}

fn unary_params(op: Unary, n: usize) -> [u32; 8] {
    let (alpha, beta) = match op {
        Unary::Scale(a) | Unary::AddScalar(a) => (a, 0.0),
        Unary::Clamp { lo, hi } => (lo, hi),
        _ => (0.0, 0.0),
    };
    // The f64 parameters are rounded once to the f32 the shader computes in.
    params(&[
        u(n),
        0,
        0,
        0,
        (alpha as f32).to_bits(),
        (beta as f32).to_bits(),
    ])
}

impl GpuBackend {
    fn fill_into(&self, dst: &GpuBuf, value: f32) -> Result<(), KernelError> {
        let n = dst.shape.len();
        self.dispatch_1d(
            &FILL,
            &[],
            params(&[u(n), 0, 0, 0, value.to_bits()]),
            &[dst.raw()],
            n,
        )
    }

    /// One workgroup per row of `rows`.
    pub(crate) fn dispatch_rows(
        &self,
        kernel: &'static Kernel,
        p: [u32; 8],
        buffers: &[&wgpu::Buffer],
        rows: usize,
    ) -> Result<(), KernelError> {
        if rows == 0 {
            return Ok(());
        }
        self.dispatch(kernel, &[], p, buffers, grid(kernel.entry, rows, 1)?)
    }
}

/// The `rows.wgsl` parameters of a prefix add of `x` at column `start` of `out` (`alpha`: the
/// scale of `add_prefix`; `index`: the weight of `add_prefix_weighted`), after the shape check.
pub(crate) fn prefix_params(
    op: &'static str,
    out: Shape,
    start: usize,
    x: Shape,
    alpha: f32,
    index: usize,
) -> Result<[u32; 8], KernelError> {
    if out.rows != x.rows || start.checked_add(x.cols).is_none_or(|end| end > out.cols) {
        return Err(KernelError::Shape {
            op,
            detail: format!("cannot add {x} at column {start} of {out}"),
        });
    }
    Ok(params(&[
        u(x.rows),
        u(x.cols),
        u(out.cols),
        u(start),
        alpha.to_bits(),
        u(index),
    ]))
}

impl Backend for GpuBackend {
    type Elem = f32;
    type Buf = GpuBuf;
    type Idx = GpuIdx;

    fn name(&self) -> String {
        self.adapter().to_string()
    }

    fn shape(&self, x: &GpuBuf) -> Shape {
        x.shape
    }

    fn upload(&self, data: &[f32], shape: Shape) -> Result<GpuBuf, KernelError> {
        if data.len() != shape.len() {
            return Err(KernelError::Length {
                op: "upload",
                shape,
                expected: shape.len(),
                got: data.len(),
            });
        }
        let buf = self.alloc("upload", shape)?;
        self.write_words("upload", buf.raw(), bytemuck::cast_slice(data))?;
        Ok(buf)
    }

    fn write(&self, dst: &mut GpuBuf, data: &[f32]) -> Result<(), KernelError> {
        if data.len() != dst.shape.len() {
            return Err(KernelError::Length {
                op: "write",
                shape: dst.shape,
                expected: dst.shape.len(),
                got: data.len(),
            });
        }
        dst.ensure_unique("write", "dst")?;
        self.write_words("write", dst.raw(), bytemuck::cast_slice(data))
    }

    fn download(&self, x: &GpuBuf) -> Result<Vec<f32>, KernelError> {
        let bytes = self.read_back(x.raw(), x.shape.len() as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn fill(&self, shape: Shape, value: f32) -> Result<GpuBuf, KernelError> {
        let out = self.alloc("fill", shape)?;
        self.fill_into(&out, value)?;
        Ok(out)
    }

    fn upload_idx(&self, idx: &[u32]) -> Result<GpuIdx, KernelError> {
        let (words, uniq) = index_layout(idx);
        let mem = self.take("upload_idx", Kind::Storage, words.len() as u64 * 4)?;
        self.write_words("upload_idx", mem.buffer(), bytemuck::cast_slice(&words))?;
        Ok(GpuIdx {
            mem: Arc::new(mem),
            len: idx.len(),
            uniq,
            max: idx.iter().copied().max(),
        })
    }

    fn idx_len(&self, idx: &GpuIdx) -> usize {
        idx.len
    }

    fn sync(&self) -> Result<(), KernelError> {
        self.flush_locked(&mut super::lock(&self.inner.batch))?;
        self.wait("sync")
    }

    fn matmul(
        &self,
        a: &GpuBuf,
        trans_a: bool,
        b: &GpuBuf,
        trans_b: bool,
        bias: Option<&GpuBuf>,
    ) -> Result<GpuBuf, KernelError> {
        const OP: &str = "matmul";
        let (m, k, n) = matmul_dims(a.shape, trans_a, b.shape, trans_b, bias.map(|b| b.shape))?;
        let out = self.alloc(OP, Shape::new(m, n))?;
        if out.shape.is_empty() {
            return Ok(out);
        }
        let [gx, gy] = [n, m].map(|d| d.div_ceil(MATMUL_TILE));
        if gx > super::MAX_GROUPS_PER_DIM as usize || gy > super::MAX_GROUPS_PER_DIM as usize {
            return Err(KernelError::Shape {
                op: OP,
                detail: format!("a {m}x{n} result exceeds the dispatch grid"),
            });
        }
        // Without a bias the slot is bound to A, which the shader then never reads.
        let bias_buf = bias.map_or(a.raw(), GpuBuf::raw);
        self.dispatch(
            &MATMUL,
            &[
                u32::from(trans_a),
                u32::from(trans_b),
                u32::from(bias.is_some()),
            ],
            params(&[u(m), u(n), u(k)]),
            &[a.raw(), b.raw(), bias_buf, out.raw()],
            [u(gx), u(gy), 1],
        )?;
        Ok(out)
    }

    fn unary(&self, op: Unary, x: &GpuBuf) -> Result<GpuBuf, KernelError> {
        let out = self.alloc("unary", x.shape)?;
        let n = x.shape.len();
        self.dispatch_1d(
            &UNARY,
            &[unary_code(op)],
            unary_params(op, n),
            &[x.raw(), out.raw()],
            n,
        )?;
        Ok(out)
    }

    fn unary_bwd(&self, op: Unary, x: &GpuBuf, dy: &GpuBuf) -> Result<GpuBuf, KernelError> {
        same_shape("unary_bwd", "dy", x.shape, dy.shape)?;
        let out = self.alloc("unary_bwd", x.shape)?;
        let n = x.shape.len();
        self.dispatch_1d(
            &UNARY_BWD,
            &[unary_code(op)],
            unary_params(op, n),
            &[x.raw(), dy.raw(), out.raw()],
            n,
        )?;
        Ok(out)
    }

    fn binary(&self, op: Binary, a: &GpuBuf, b: &GpuBuf) -> Result<GpuBuf, KernelError> {
        let p = binary_params("binary", a.shape, b.shape)?;
        let out = self.alloc("binary", a.shape)?;
        self.dispatch_1d(
            &BINARY,
            &[binary_code(op)],
            p,
            &[a.raw(), b.raw(), out.raw()],
            a.shape.len(),
        )?;
        Ok(out)
    }

    fn binary_bwd(
        &self,
        op: Binary,
        a: &GpuBuf,
        b: &GpuBuf,
        dy: &GpuBuf,
    ) -> Result<(GpuBuf, GpuBuf), KernelError> {
        let p = binary_params("binary_bwd", a.shape, b.shape)?;
        same_shape("binary_bwd", "dy", a.shape, dy.shape)?;
        let da = self.alloc("binary_bwd", a.shape)?;
        let db = self.alloc("binary_bwd", a.shape)?;
        self.dispatch_1d(
            &BINARY_BWD,
            &[binary_code(op)],
            p,
            &[a.raw(), b.raw(), dy.raw(), da.raw(), db.raw()],
            a.shape.len(),
        )?;
        Ok((da, db))
    }

    fn reduce(&self, op: Reduce, x: &GpuBuf) -> Result<GpuBuf, KernelError> {
        const OP: &str = "reduce";
        let Shape { rows, cols } = x.shape;
        match op {
            Reduce::All => {
                let out = self.alloc(OP, Shape::scalar())?;
                let n = x.shape.len();
                if n == 0 {
                    self.fill_into(&out, 0.0)?;
                    return Ok(out);
                }
                let groups = n.div_ceil(SUM_CHUNK).min(SUM_GROUPS);
                let pass = |src: &GpuBuf, n: usize, groups: usize, dst: &GpuBuf| {
                    self.dispatch(
                        &SUM_PARTIAL,
                        &[],
                        params(&[0, 0, u(n), u(groups)]),
                        &[src.raw(), dst.raw()],
                        [u(groups), 1, 1],
                    )
                };
                if groups == 1 {
                    pass(x, n, 1, &out)?;
                } else {
                    let partials = self.alloc(OP, Shape::new(groups, 1))?;
                    pass(x, n, groups, &partials)?;
                    pass(&partials, groups, 1, &out)?;
                }
                Ok(out)
            }
            Reduce::RowSums => {
                let out = self.alloc(OP, Shape::new(rows, 1))?;
                if cols == 0 {
                    self.fill_into(&out, 0.0)?;
                } else {
                    self.dispatch_rows(
                        &ROW_SUMS,
                        params(&[u(rows), u(cols)]),
                        &[x.raw(), out.raw()],
                        rows,
                    )?;
                }
                Ok(out)
            }
            Reduce::ColSums => {
                let out = self.alloc(OP, Shape::new(1, cols))?;
                if rows == 0 {
                    self.fill_into(&out, 0.0)?;
                } else if cols > 0 {
                    self.dispatch(
                        &COL_SUMS,
                        &[],
                        params(&[u(rows), u(cols)]),
                        &[x.raw(), out.raw()],
                        grid(OP, cols, COL_SUMS_COLS)?,
                    )?;
                }
                Ok(out)
            }
        }
    }

    fn row_normalize(&self, x: &GpuBuf, eps: f32) -> Result<GpuBuf, KernelError> {
        let out = self.alloc("row_normalize", x.shape)?;
        let Shape { rows, cols } = x.shape;
        if cols > 0 {
            let p = params(&[u(rows), u(cols), 0, 0, eps.to_bits()]);
            self.dispatch_rows(&ROW_NORMALIZE, p, &[x.raw(), out.raw()], rows)?;
        }
        Ok(out)
    }

    fn row_normalize_bwd(&self, x: &GpuBuf, dy: &GpuBuf, eps: f32) -> Result<GpuBuf, KernelError> {
        same_shape("row_normalize_bwd", "dy", x.shape, dy.shape)?;
        let out = self.alloc("row_normalize_bwd", x.shape)?;
        let Shape { rows, cols } = x.shape;
        if cols > 0 {
            let p = params(&[u(rows), u(cols), 0, 0, eps.to_bits()]);
            self.dispatch_rows(&ROW_NORMALIZE_BWD, p, &[x.raw(), dy.raw(), out.raw()], rows)?;
        }
        Ok(out)
    }

    fn slice_cols(&self, x: &GpuBuf, start: usize, len: usize) -> Result<GpuBuf, KernelError> {
        const OP: &str = "slice_cols";
        let Shape { rows, cols } = x.shape;
        if start.checked_add(len).is_none_or(|end| end > cols) {
            return Err(KernelError::Shape {
                op: OP,
                detail: format!("columns {start}..{start}+{len} of a {} matrix", x.shape),
            });
        }
        let out = self.alloc(OP, Shape::new(rows, len))?;
        let p = params(&[u(rows), u(len), u(cols), u(start)]);
        self.dispatch_1d(&SLICE_COLS, &[], p, &[x.raw(), out.raw()], rows * len)?;
        Ok(out)
    }

    fn add_prefix_scaled(
        &self,
        out: &mut GpuBuf,
        start: usize,
        x: &GpuBuf,
        alpha: f32,
    ) -> Result<(), KernelError> {
        let p = prefix_params("add_prefix_scaled", out.shape, start, x.shape, alpha, 0)?;
        out.ensure_unique("add_prefix_scaled", "out")?;
        self.dispatch_1d(&ADD_PREFIX, &[], p, &[x.raw(), out.raw()], x.shape.len())
    }

    fn gather_rows(&self, table: &GpuBuf, idx: &GpuIdx) -> Result<GpuBuf, KernelError> {
        const OP: &str = "gather_rows";
        check_index(OP, idx, table.shape.rows)?;
        let cols = table.shape.cols;
        let out = self.alloc(OP, Shape::new(idx.len, cols))?;
        let p = params(&[0, u(cols), 0, 0, 0, u(idx.len), u(idx.uniq)]);
        self.dispatch_1d(
            &GATHER_ROWS,
            &[],
            p,
            &[table.raw(), idx.raw(), out.raw()],
            idx.len * cols,
        )?;
        Ok(out)
    }

    fn scatter_add_rows(
        &self,
        src: &GpuBuf,
        idx: &GpuIdx,
        table_rows: usize,
    ) -> Result<GpuBuf, KernelError> {
        const OP: &str = "scatter_add_rows";
        if src.shape.rows != idx.len {
            return Err(KernelError::Shape {
                op: OP,
                detail: format!("{} source rows for {} indices", src.shape.rows, idx.len),
            });
        }
        check_index(OP, idx, table_rows)?;
        let cols = src.shape.cols;
        let out = self.fill(Shape::new(table_rows, cols), 0.0)?;
        let p = params(&[0, u(cols), 0, 0, 0, u(idx.len), u(idx.uniq)]);
        self.dispatch_1d(
            &SCATTER_ADD_ROWS,
            &[],
            p,
            &[src.raw(), idx.raw(), out.raw()],
            idx.uniq * cols,
        )?;
        Ok(out)
    }

    fn set_rows(&self, table: &mut GpuBuf, idx: &GpuIdx, src: &GpuBuf) -> Result<(), KernelError> {
        const OP: &str = "set_rows";
        same_shape(OP, "src", Shape::new(idx.len, table.shape.cols), src.shape)?;
        check_index(OP, idx, table.shape.rows)?;
        table.ensure_unique(OP, "table")?;
        let cols = src.shape.cols;
        let p = params(&[0, u(cols), 0, 0, 0, u(idx.len), u(idx.uniq)]);
        self.dispatch_1d(
            &SET_ROWS,
            &[],
            p,
            &[src.raw(), idx.raw(), table.raw()],
            idx.uniq * cols,
        )
    }

    fn adam_step(
        &self,
        param: &mut GpuBuf,
        grad: &GpuBuf,
        m: &mut GpuBuf,
        v: &mut GpuBuf,
        step: AdamStep,
    ) -> Result<(), KernelError> {
        const OP: &str = "adam_step";
        same_shape(OP, "grad", param.shape, grad.shape)?;
        same_shape(OP, "m", param.shape, m.shape)?;
        same_shape(OP, "v", param.shape, v.shape)?;
        param.ensure_unique(OP, "param")?;
        m.ensure_unique(OP, "m")?;
        v.ensure_unique(OP, "v")?;
        let n = param.shape.len();
        let s = step;
        let p = [
            s.lr,
            s.beta1,
            s.beta2,
            s.eps,
            s.weight_decay,
            s.bias1,
            s.bias2,
        ]
        .map(f32::to_bits);
        let mut words = [u(n); 8];
        words[1..].copy_from_slice(&p);
        self.dispatch_1d(
            &ADAM,
            &[],
            words,
            &[grad.raw(), param.raw(), m.raw(), v.raw()],
            n,
        )
    }
}

/// The parameter block of a broadcast binary op, after checking that `b` broadcasts onto `a`.
fn binary_params(op: &'static str, a: Shape, b: Shape) -> Result<[u32; 8], KernelError> {
    if !a.accepts_broadcast(b) {
        return Err(KernelError::Shape {
            op,
            detail: format!("{b} does not broadcast onto {a} (same, 1 x cols, rows x 1 or 1 x 1)"),
        });
    }
    Ok(params(&[u(a.len()), u(a.cols), u(b.rows), u(b.cols)]))
}
