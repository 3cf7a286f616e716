//! The backend's scratch buffers, grown on demand and never shrunk: the f32 im2col / dcol matrix,
//! the half-precision GEMM operands, and the bias gradients' partial sums. Growing one drops
//! every step recording, since recordings hold the old address. Leaves out: what a layer keeps
//! between its passes (the network owns that: `CudaConv2dSaved`).

use mnist_core::Result;

use crate::device::{CudaBuffer, Device};
use crate::graph::StepGraphs;

/// The im2col scratch holds at most this many floats (256 MiB); larger batches are convolved
/// in chunks of samples. A batch of 128 of the default model needs 21 M (one chunk).
pub(crate) const COL_CAP: usize = 1 << 26;

/// Half-precision scratch slots: a recomputed im2col matrix; the GEMM's A and B when converted
/// from f32; and a layer's output gradient, written by `bias_gradient` for the two GEMMs that
/// read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HalfSlot {
    Col,
    A,
    B,
    Dout,
}

#[derive(Default)]
pub(crate) struct Scratch {
    col: Option<CudaBuffer<f32>>,
    /// COL_CAP, or less for tests of convolutions in chunks.
    pub(crate) col_cap: usize,
    half: [Option<CudaBuffer<u16>>; 4], // bf16 or f16 bits, by HalfSlot
    partial: Option<CudaBuffer<f32>>,   // (blocks, channels): bias gradients' per-block sums
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch { col_cap: COL_CAP, ..Scratch::default() }
    }

    /// The address of at least `len` floats for im2col and dcol.
    pub(crate) fn col(&mut self, device: &Device, graphs: &mut StepGraphs, len: usize) -> Result<u64> {
        grow(&mut self.col, device, graphs, "im2col scratch", len)
    }

    /// The address of room for at least `len` half-precision values in `slot`.
    pub(crate) fn half(&mut self, device: &Device, graphs: &mut StepGraphs, slot: HalfSlot, len: usize) -> Result<u64> {
        grow(&mut self.half[slot as usize], device, graphs, "half-precision scratch", len)
    }

    /// The address of at least `len` floats for the bias gradients' partial sums.
    pub(crate) fn partial(&mut self, device: &Device, graphs: &mut StepGraphs, len: usize) -> Result<u64> {
        grow(&mut self.partial, device, graphs, "bias gradient scratch", len)
    }
}

/// `buffer`'s address after growing it to at least `len` values (`what` names it in errors).
fn grow<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    buffer: &mut Option<CudaBuffer<T>>,
    device: &Device,
    graphs: &mut StepGraphs,
    what: &str,
    len: usize,
) -> Result<u64> {
    if buffer.as_ref().is_none_or(|b| b.len < len) {
        graphs.drop_recordings(what)?;
        *buffer = None; // free the old one first (stream-ordered)
        *buffer = Some(device.alloc(len)?);
    }
    Ok(buffer.as_ref().map_or(0, |b| b.ptr))
}
