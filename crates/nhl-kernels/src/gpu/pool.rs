//! Device buffers behind cheap handles, recycled through a pool keyed by size class so that a
//! training loop, which allocates the same sizes every step, stops creating wgpu buffers after
//! its first step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::backend::Shape;
use crate::error::KernelError;

/// What a pooled buffer is for; buffers of different kinds never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Kernel operand: storage, copy source and destination.
    Storage,
    /// Read-back staging: mappable for reading, copy destination.
    Staging,
}

impl Kind {
    fn usage(self) -> wgpu::BufferUsages {
        match self {
            Kind::Storage => {
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST
            }
            Kind::Staging => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        }
    }
}

/// The size class of a request: the next power of two, at least 256 bytes. Power-of-two
/// classes waste at most half a buffer and make every size of a training step hit the pool.
pub(crate) fn size_class(bytes: u64) -> u64 {
    bytes.max(256).next_power_of_two()
}

/// Free buffers by (kind, size class), and how many buffers were ever created.
#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<HashMap<(Kind, u64), Vec<wgpu::Buffer>>>,
    created: AtomicU64,
}

impl Pool {
    /// A buffer of at least `bytes` bytes: a free one of its class, or a new one.
    pub(crate) fn take(self: &Arc<Self>, device: &wgpu::Device, kind: Kind, bytes: u64) -> Pooled {
        let class = size_class(bytes);
        let reused = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&(kind, class))
            .and_then(Vec::pop);
        let buffer = reused.unwrap_or_else(|| {
            self.created.fetch_add(1, Ordering::Relaxed);
            device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: class,
                usage: kind.usage(),
                mapped_at_creation: false,
            })
        });
        Pooled {
            buffer: Some(buffer),
            kind,
            class,
            pool: Arc::clone(self),
        }
    }

    /// Counts a buffer created outside the pool (the parameter ring).
    pub(crate) fn count_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }
}

/// A buffer on loan from the pool; dropping it returns the buffer. wgpu keeps the memory alive
/// for commands already recorded, and later commands are ordered after them, so a buffer can be
/// handed out again at once.
pub(crate) struct Pooled {
    buffer: Option<wgpu::Buffer>,
    kind: Kind,
    class: u64,
    pool: Arc<Pool>,
}

impl Pooled {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        // Only `drop` takes the buffer out.
        self.buffer
            .as_ref()
            .unwrap_or_else(|| unreachable!("pooled buffer used after drop"))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry((self.kind, self.class))
                .or_default()
                .push(b);
        }
    }
}

/// A device matrix of `f32`: a shared handle (cloning aliases the same memory) and its shape.
/// The memory returns to its backend's pool when the last handle is dropped. An in-place op
/// refuses a handle that shares its memory.
#[derive(Clone)]
pub struct GpuBuf {
    pub(crate) mem: Arc<Pooled>,
    pub(crate) shape: Shape,
}

impl GpuBuf {
    /// The shape of the matrix.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.mem.buffer()
    }

    /// Checks that this is the only handle to its memory before `op` updates its operand
    /// `operand` in place: a clone would otherwise see the write, which a caller tested on the
    /// CPU backend would not expect.
    pub(crate) fn ensure_unique(
        &mut self,
        op: &'static str,
        operand: &'static str,
    ) -> Result<(), KernelError> {
        match Arc::get_mut(&mut self.mem) {
            Some(_) => Ok(()),
            None => Err(KernelError::SharedBuffer { op, operand }),
        }
    }
}

impl std::fmt::Debug for GpuBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuf{}", self.shape)
    }
}

/// A device vector of row indices, with the grouping by target row that scatter-add and
/// set-rows use (see `shaders/rows.wgsl`), computed on the host at upload.
#[derive(Clone)]
pub struct GpuIdx {
    pub(crate) mem: Arc<Pooled>,
    pub(crate) len: usize,
    /// Distinct target rows.
    pub(crate) uniq: usize,
    /// The largest index, checked against a table's rows before any kernel reads it.
    pub(crate) max: Option<u32>,
}

impl GpuIdx {
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.mem.buffer()
    }
}

impl std::fmt::Debug for GpuIdx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuIdx[{}]", self.len)
    }
}

/// The u32 words of an index vector on the device: `[idx][perm][offsets][uniq]`, where `perm`
/// lists positions stably sorted by target row, `offsets[u]..offsets[u + 1]` is the group of the
/// `u`-th distinct row and `uniq[u]` that row.
pub(crate) fn index_layout(idx: &[u32]) -> (Vec<u32>, usize) {
    let mut perm: Vec<u32> = (0..idx.len() as u32).collect();
    perm.sort_by_key(|&i| idx[i as usize]);
    let mut offsets = Vec::new();
    let mut uniq = Vec::new();
    for (j, &i) in perm.iter().enumerate() {
        let row = idx[i as usize];
        if uniq.last() != Some(&row) {
            uniq.push(row);
            offsets.push(j as u32);
        }
    }
    offsets.push(idx.len() as u32);
    let n_uniq = uniq.len();
    let mut words = Vec::with_capacity(2 * idx.len() + 2 * n_uniq + 1);
    words.extend_from_slice(idx);
    words.extend_from_slice(&perm);
    words.extend_from_slice(&offsets);
    words.extend_from_slice(&uniq);
    (words, n_uniq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_layout_groups_duplicates_in_index_order() {
        let (w, u) = index_layout(&[3, 1, 3, 0, 1, 3]);
        assert_eq!(u, 3);
        let (idx, rest) = w.split_at(6);
        let (perm, rest) = rest.split_at(6);
        let (offsets, uniq) = rest.split_at(4);
        assert_eq!(idx, [3, 1, 3, 0, 1, 3]);
        assert_eq!(perm, [3, 1, 4, 0, 2, 5]);
        assert_eq!(offsets, [0, 1, 3, 6]);
        assert_eq!(uniq, [0, 1, 3]);
    }

    #[test]
    fn size_classes_are_powers_of_two_from_256() {
        assert_eq!(size_class(0), 256);
        assert_eq!(size_class(4), 256);
        assert_eq!(size_class(257), 512);
        assert_eq!(size_class(1 << 20), 1 << 20);
    }
}
