//! The tape: an arena of nodes in creation order, a reverse walk that sums gradients on fan-in,
//! and gradients keyed by node id.

use std::cell::{Cell, RefCell};

use nhl_kernels::{Backend, Binary, Reduce, Shape, Unary};

use crate::error::AutogradError;
use crate::params::ParamId;

/// Index of a node in the tape's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(usize);

/// A value on the backend, and the node that produced it when it takes part in a gradient.
///
/// A tensor without a node is a constant: made in no-grad mode, detached, or computed only from
/// constants. Cloning is cheap (the buffer is a handle).
#[derive(Clone, Debug)]
pub struct Tensor<B: Backend> {
    value: B::Buf,
    shape: Shape,
    node: Option<NodeId>,
}

impl<B: Backend> Tensor<B> {
    /// The device buffer.
    pub fn value(&self) -> &B::Buf {
        &self.value
    }
    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }
    /// The node recording this tensor, if it takes part in a gradient.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }
    /// The same value without its node: gradients stop here (stop-gradient, `sg(.)`).
    pub fn detach(&self) -> Self {
        Self {
            value: self.value.clone(),
            shape: self.shape,
            node: None,
        }
    }
}

/// An input of a recorded op: its node (when it needs a gradient) and the value the rule reads.
#[derive(Debug)]
struct Input<B: Backend> {
    node: Option<NodeId>,
    value: B::Buf,
    shape: Shape,
}

impl<B: Backend> Input<B> {
    fn of(t: &Tensor<B>) -> Self {
        Self {
            node: t.node,
            value: t.value.clone(),
            shape: t.shape,
        }
    }
}

/// What produced a node, with exactly what its backward rule needs.
#[derive(Debug)]
enum Op<B: Backend> {
    /// A leaf: a trainable parameter or a tensor marked as requiring a gradient.
    Leaf { param: Option<ParamId> },
    /// `C = op(A) op(B) (+ bias)`.
    Matmul {
        a: Input<B>,
        trans_a: bool,
        b: Input<B>,
        trans_b: bool,
        bias: Option<NodeId>,
    },
    /// `y = f(x)`.
    Unary { op: Unary, x: Input<B> },
    /// `y = f(a, b)` with `b` broadcast.
    Binary {
        op: Binary,
        a: Input<B>,
        b: Input<B>,
    },
    /// Sums.
    Reduce { x: NodeId, x_shape: Shape },
    /// `y_i = x_i / max(||x_i||, eps)`.
    RowNormalize { x: Input<B>, eps: f32 },
    /// Columns `start ..` of `x`.
    SliceCols {
        x: NodeId,
        x_shape: Shape,
        start: usize,
    },
    /// Rows `idx` of a table.
    GatherRows {
        table: NodeId,
        table_rows: usize,
        idx: B::Idx,
    },
}

#[derive(Debug)]
struct Node<B: Backend> {
    op: Op<B>,
}

/// Gradients of one backward pass, keyed by node id.
#[derive(Debug)]
pub struct Gradients<B: Backend> {
    grads: Vec<Option<B::Buf>>,
    params: Vec<(ParamId, NodeId)>,
}

impl<B: Backend> Gradients<B> {
    /// The gradient reaching `t`, if any flowed there.
    pub fn get(&self, t: &Tensor<B>) -> Option<&B::Buf> {
        t.node
            .and_then(|id| self.grads.get(id.0))
            .and_then(|g| g.as_ref())
    }

    /// The gradient of every parameter leaf that received one.
    pub fn params(&self) -> impl Iterator<Item = (ParamId, &B::Buf)> + '_ {
        self.params
            .iter()
            .filter_map(|&(p, id)| self.grads[id.0].as_ref().map(|g| (p, g)))
    }
}

/// The tape. Ops take `&self`, so many tensors can be combined freely; every op returns a
/// [`Tensor`] whose value is computed at once on the backend.
pub struct Tape<'b, B: Backend> {
    backend: &'b B,
    nodes: RefCell<Vec<Node<B>>>,
    grad_enabled: Cell<bool>,
}

impl<'b, B: Backend> Tape<'b, B> {
    /// An empty tape on `backend`.
    pub fn new(backend: &'b B) -> Self {
        Self {
            backend,
            nodes: RefCell::new(Vec::new()),
            grad_enabled: Cell::new(true),
        }
    }

    /// The backend the tape computes on.
    pub fn backend(&self) -> &'b B {
        self.backend
    }

    /// Number of recorded nodes (zero after a backward pass).
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` with recording off: ops compute values and record no node (nothing is kept for a
    /// backward pass, so it costs no memory).
    pub fn no_grad<T>(&self, f: impl FnOnce() -> T) -> T {
        let before = self.grad_enabled.replace(false);
        let out = f();
        self.grad_enabled.set(before);
        out
    }

    /// Drops every recorded node without a backward pass.
    pub fn clear(&self) {
        self.nodes.borrow_mut().clear();
    }

    fn push(&self, op: Op<B>) -> NodeId {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node { op });
        NodeId(nodes.len() - 1)
    }

    /// Wraps `value` in a tensor, recording a node only when `needs` is true.
    fn output(&self, value: B::Buf, needs: bool, op: impl FnOnce() -> Op<B>) -> Tensor<B> {
        let shape = self.backend.shape(&value);
        let node = (needs && self.grad_enabled.get()).then(|| self.push(op()));
        Tensor { value, shape, node }
    }

    /// A constant: no gradient flows into it.
    pub fn constant(&self, value: B::Buf) -> Tensor<B> {
        let shape = self.backend.shape(&value);
        Tensor {
            value,
            shape,
            node: None,
        }
    }

    /// A leaf whose gradient is wanted (read it with [`Gradients::get`]).
    pub fn leaf(&self, value: B::Buf) -> Tensor<B> {
        self.output(value, true, || Op::Leaf { param: None })
    }

    /// The leaf of a named parameter; its gradient is reported by [`Gradients::params`].
    pub fn param(&self, id: ParamId, value: B::Buf) -> Tensor<B> {
        self.output(value, true, || Op::Leaf { param: Some(id) })
    }

    /// `op(A) op(B) (+ bias)`; see [`Backend::matmul`].
    pub fn matmul(
        &self,
        a: &Tensor<B>,
        trans_a: bool,
        b: &Tensor<B>,
        trans_b: bool,
        bias: Option<&Tensor<B>>,
    ) -> Result<Tensor<B>, AutogradError> {
        let value =
            self.backend
                .matmul(&a.value, trans_a, &b.value, trans_b, bias.map(|t| &t.value))?;
        let bias_node = bias.and_then(|t| t.node);
        let needs = a.node.is_some() || b.node.is_some() || bias_node.is_some();
        Ok(self.output(value, needs, || Op::Matmul {
            a: Input::of(a),
            trans_a,
            b: Input::of(b),
            trans_b,
            bias: bias_node,
        }))
    }

    /// The nested projection `X W^T + b` (`w` is `out x in`, PyTorch's layout).
    pub fn linear(
        &self,
        x: &Tensor<B>,
        w: &Tensor<B>,
        b: &Tensor<B>,
    ) -> Result<Tensor<B>, AutogradError> {
        self.matmul(x, false, w, true, Some(b))
    }

    /// `y = f(x)` elementwise.
    pub fn unary(&self, op: Unary, x: &Tensor<B>) -> Result<Tensor<B>, AutogradError> {
        let value = self.backend.unary(op, &x.value)?;
        // Sign has a zero derivative everywhere: nothing to record.
        let needs = x.node.is_some() && op != Unary::Sign;
        Ok(self.output(value, needs, || Op::Unary {
            op,
            x: Input::of(x),
        }))
    }

    /// `y = f(a, b)` with `b` broadcast onto `a`.
    pub fn binary(
        &self,
        op: Binary,
        a: &Tensor<B>,
        b: &Tensor<B>,
    ) -> Result<Tensor<B>, AutogradError> {
        let value = self.backend.binary(op, &a.value, &b.value)?;
        let needs = a.node.is_some() || b.node.is_some();
        Ok(self.output(value, needs, || Op::Binary {
            op,
            a: Input::of(a),
            b: Input::of(b),
        }))
    }

    /// Sums over everything (`1 x 1`), each row (`rows x 1`) or each column (`1 x cols`).
    pub fn sum(&self, op: Reduce, x: &Tensor<B>) -> Result<Tensor<B>, AutogradError> {
        let value = self.backend.reduce(op, &x.value)?;
        Ok(match x.node {
            Some(id) => self.output(value, true, || Op::Reduce {
                x: id,
                x_shape: x.shape,
            }),
            None => self.constant(value),
        })
    }

    /// Row L2 normalisation `x_i / max(||x_i||, eps)`.
    pub fn row_normalize(&self, x: &Tensor<B>, eps: f32) -> Result<Tensor<B>, AutogradError> {
        let value = self.backend.row_normalize(&x.value, eps)?;
        Ok(self.output(value, x.node.is_some(), || Op::RowNormalize {
            x: Input::of(x),
            eps,
        }))
    }

    /// Columns `start .. start + len`: the `b`-bit code is `slice_cols(u, 0, b)` of the longest.
    pub fn slice_cols(
        &self,
        x: &Tensor<B>,
        start: usize,
        len: usize,
    ) -> Result<Tensor<B>, AutogradError> {
        let value = self.backend.slice_cols(&x.value, start, len)?;
        Ok(match x.node {
            Some(id) => self.output(value, true, || Op::SliceCols {
                x: id,
                x_shape: x.shape,
                start,
            }),
            None => self.constant(value),
        })
    }

    /// Rows `idx[i]` of `table` (class centres, memory banks).
    pub fn gather_rows(&self, table: &Tensor<B>, idx: &B::Idx) -> Result<Tensor<B>, AutogradError> {
        let value = self.backend.gather_rows(&table.value, idx)?;
        Ok(match table.node {
            Some(id) => self.output(value, true, || Op::GatherRows {
                table: id,
                table_rows: table.shape.rows,
                idx: idx.clone(),
            }),
            None => self.constant(value),
        })
    }

    /// Reverse walk from a scalar `root` seeded with 1. Clears the tape.
    pub fn backward(&self, root: &Tensor<B>) -> Result<Gradients<B>, AutogradError> {
        if root.shape != Shape::scalar() {
            return Err(AutogradError::NotScalar { shape: root.shape });
        }
        let one = self.backend.fill(Shape::scalar(), 1.0)?;
        self.backward_from(&[(root, one)])
    }

    /// Reverse walk seeded with given output gradients (each of its tensor's shape); gradients of
    /// every node reached are kept, so intermediate ones can be read. Clears the tape.
    pub fn backward_from(
        &self,
        seeds: &[(&Tensor<B>, B::Buf)],
    ) -> Result<Gradients<B>, AutogradError> {
        let nodes = std::mem::take(&mut *self.nodes.borrow_mut());
        let mut grads: Vec<Option<B::Buf>> = Vec::new();
        grads.resize_with(nodes.len(), || None);
        for (t, g) in seeds {
            let id = t.node.ok_or(AutogradError::NoNode)?;
            let g_shape = self.backend.shape(g);
            if g_shape != t.shape {
                return Err(AutogradError::SeedShape {
                    expected: t.shape,
                    got: g_shape,
                });
            }
            accumulate(self.backend, &mut grads, id, g.clone())?;
        }
        let mut params = Vec::new();
        for (i, node) in nodes.iter().enumerate().rev() {
            if let Op::Leaf { param: Some(p) } = node.op {
                params.push((p, NodeId(i)));
            }
            let Some(dy) = grads[i].clone() else { continue };
            self.backward_node(&node.op, &dy, &mut grads)?;
        }
        params.reverse();
        Ok(Gradients { grads, params })
    }

    fn backward_node(
        &self,
        op: &Op<B>,
        dy: &B::Buf,
        grads: &mut [Option<B::Buf>],
    ) -> Result<(), AutogradError> {
        let be = self.backend;
        match op {
            Op::Leaf { .. } => {}
            Op::Matmul {
                a,
                trans_a,
                b,
                trans_b,
                bias,
            } => {
                let (ta, tb) = (*trans_a, *trans_b);
                // C = op(A) op(B): d op(A) = dC op(B)^T and d op(B) = op(A)^T dC, transposed back
                // when the operand was used transposed.
                if let Some(id) = a.node {
                    let da = if ta {
                        be.matmul(&b.value, tb, dy, true, None)?
                    } else {
                        be.matmul(dy, false, &b.value, !tb, None)?
                    };
                    accumulate(be, grads, id, da)?;
                }
                if let Some(id) = b.node {
                    let db = if tb {
                        be.matmul(dy, true, &a.value, ta, None)?
                    } else {
                        be.matmul(&a.value, !ta, dy, false, None)?
                    };
                    accumulate(be, grads, id, db)?;
                }
                if let Some(id) = bias {
                    accumulate(be, grads, *id, be.reduce(Reduce::ColSums, dy)?)?;
                }
            }
            Op::Unary { op, x } => {
                if let Some(id) = x.node {
                    accumulate(be, grads, id, be.unary_bwd(*op, &x.value, dy)?)?;
                }
            }
            Op::Binary { op, a, b } => {
                let (da, db) = be.binary_bwd(*op, &a.value, &b.value, dy)?;
                if let Some(id) = a.node {
                    accumulate(be, grads, id, da)?;
                }
                if let Some(id) = b.node {
                    accumulate(be, grads, id, unbroadcast(be, db, b.shape)?)?;
                }
            }
            Op::Reduce { x, x_shape } => {
                // The sum's gradient is dy broadcast back over what was summed.
                let zeros = be.zeros(*x_shape)?;
                accumulate(be, grads, *x, be.binary(Binary::Add, &zeros, dy)?)?;
            }
            Op::RowNormalize { x, eps } => {
                if let Some(id) = x.node {
                    accumulate(be, grads, id, be.row_normalize_bwd(&x.value, dy, *eps)?)?;
                }
            }
            Op::SliceCols { x, x_shape, start } => {
                let mut dx = be.zeros(*x_shape)?;
                be.add_prefix_scaled(&mut dx, *start, dy, 1.0)?;
                accumulate(be, grads, *x, dx)?;
            }
            Op::GatherRows {
                table,
                table_rows,
                idx,
            } => {
                accumulate(
                    be,
                    grads,
                    *table,
                    be.scatter_add_rows(dy, idx, *table_rows)?,
                )?;
            }
        }
        Ok(())
    }
}

/// Sums a full-shape partial back to the shape of an operand that was broadcast.
fn unbroadcast<B: Backend>(be: &B, g: B::Buf, to: Shape) -> Result<B::Buf, AutogradError> {
    let from = be.shape(&g);
    Ok(match (to.rows == from.rows, to.cols == from.cols) {
        (true, true) => g,
        (true, false) => be.reduce(Reduce::RowSums, &g)?,
        (false, true) => be.reduce(Reduce::ColSums, &g)?,
        (false, false) => be.reduce(Reduce::All, &g)?,
    })
}

/// Adds `g` into the gradient of node `id` (fan-in).
fn accumulate<B: Backend>(
    be: &B,
    grads: &mut [Option<B::Buf>],
    id: NodeId,
    g: B::Buf,
) -> Result<(), AutogradError> {
    let slot = &mut grads[id.0];
    *slot = Some(match slot.take() {
        Some(prev) => be.binary(Binary::Add, &prev, &g)?,
        None => g,
    });
    Ok(())
}
