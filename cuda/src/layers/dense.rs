//! The dense layer's launchers, as mnist-core's layers/dense.rs: out = act(inp @ kernel + bias)
//! as one GEMM with the bias/ReLU epilogue; the backward masks dout by the ReLU while summing
//! the bias gradient, then two GEMMs (dkernel, dinp). Leaves out: kernels of its own (it has
//! none: gemm.rs and the shared bias gradient do the work).

use mnist_core::shape::DenseDims;
use mnist_core::{Result, Span};

use crate::device::CudaBuffer;
use crate::gemm::{gradient_operand, Operand, RowMajorGemm};
use crate::layers::bias_gradient;
use crate::CudaBackend;

/// `Backend::dense_forward`, checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    be: &mut CudaBackend,
    out: &mut CudaBuffer<f32>,
    inp: &CudaBuffer<f32>,
    params: &CudaBuffer<f32>,
    kernel: Span,
    bias: Span,
    d: DenseDims,
    relu: bool,
) -> Result<()> {
    let op = "dense_forward";
    let (b, i, o) = (d.batch, d.inputs, d.outputs);
    if b == 0 {
        return Ok(());
    }
    // out (B, O) = inp (B, I) @ kernel (I, O)
    let g = RowMajorGemm {
        m: b,
        n: o,
        k: i,
        transpose_a: false,
        transpose_b: false,
        lda: i,
        ldb: o,
        ldc: o,
        alpha: 1.0,
        beta: 0.0,
    };
    be.gemm_bias_act(
        op,
        g,
        Operand::F32(inp.ptr, b * i),
        Operand::F32(params.at(kernel.offset), kernel.len),
        (out.ptr, b * o),
        params.at(bias.offset),
        relu,
    )
}

/// `Backend::dense_backward`, checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    be: &mut CudaBackend,
    dinp: Option<&mut CudaBuffer<f32>>,
    dparams: &mut CudaBuffer<f32>,
    dout: &mut CudaBuffer<f32>,
    out: &CudaBuffer<f32>,
    inp: &CudaBuffer<f32>,
    params: &CudaBuffer<f32>,
    kernel: Span,
    bias: Span,
    d: DenseDims,
    relu: bool,
) -> Result<()> {
    let op = "dense_backward";
    let (b, i, o) = (d.batch, d.inputs, d.outputs);
    let (dkernel, dbias) = ((dparams.at(kernel.offset), kernel.len), (dparams.at(bias.offset), bias.len));
    if b == 0 {
        be.device.zero(dkernel.0, kernel.len)?;
        return be.device.zero(dbias.0, bias.len);
    }
    let half_dout = be.half_dout(b * o)?;
    bias_gradient(be, op, dbias, dout.ptr, half_dout, out.ptr, b, o, relu)?;
    let dout_operand = gradient_operand(dout.ptr, half_dout, 0, b * o);
    // dkernel (I, O) = inp^T (I, B) @ dout (B, O)
    let g = RowMajorGemm {
        m: i,
        n: o,
        k: b,
        transpose_a: true,
        transpose_b: false,
        lda: i,
        ldb: o,
        ldc: o,
        alpha: 1.0,
        beta: 0.0,
    };
    be.gemm(op, g, Operand::F32(inp.ptr, b * i), dout_operand, dkernel)?;
    if let Some(dinp) = dinp {
        // dinp (B, I) = dout (B, O) @ kernel^T (O, I)
        let g = RowMajorGemm {
            m: b,
            n: i,
            k: o,
            transpose_a: false,
            transpose_b: true,
            lda: o,
            ldb: o,
            ldc: i,
            alpha: 1.0,
            beta: 0.0,
        };
        be.gemm(op, g, dout_operand, Operand::F32(params.at(kernel.offset), kernel.len), (dinp.ptr, b * i))?;
    }
    Ok(())
}
