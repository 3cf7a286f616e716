//! The argument checks of every backend op, made once by `Backend`'s provided methods before
//! they call a backend's `*_checked` op: buffer lengths (in values), parameter spans, datasets
//! and batches. Leaves out what only a host can check (label values): the CPU does that itself.

use crate::config::Span;
use crate::error::{Error, Result};
use crate::shape::{Conv2dDims, DenseDims, PoolDims};

use super::METRICS_LEN;

/// `what` (a buffer of `have` values) must hold at least `need`.
pub fn length(op: &str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(Error::Backend {
            op: op.into(),
            message: alloc::format!("{what} holds {have} values but {need} are needed"),
        });
    }
    Ok(())
}

/// `span` must be exactly `need` values long and lie inside a buffer of `buffer` values.
pub fn span(op: &str, buffer: usize, span: Span, need: usize) -> Result<()> {
    if span.len != need || span.offset + span.len > buffer {
        return Err(Error::Backend {
            op: op.into(),
            message: alloc::format!("parameter span {span:?} does not fit {need} values in a buffer of {buffer}"),
        });
    }
    Ok(())
}

/// A backward pass writes the kernel's and the bias's gradients into one buffer: their
/// spans must not share a value.
pub fn disjoint(op: &str, kernel: Span, bias: Span) -> Result<()> {
    if kernel.offset < bias.offset + bias.len && bias.offset < kernel.offset + kernel.len {
        return Err(Error::Backend { op: op.into(), message: "kernel and bias spans overlap".into() });
    }
    Ok(())
}

/// `images` must be `labels.len()` samples of `sample_len` bytes, and fit u32 indices.
pub fn dataset(images: &[u8], labels: &[u8], sample_len: usize) -> Result<()> {
    if sample_len == 0 || images.len() != labels.len() * sample_len {
        return Err(Error::invalid("dataset", "image bytes do not match the label count"));
    }
    if labels.len() > u32::MAX as usize {
        return Err(Error::invalid("dataset", "more than 2^32 samples"));
    }
    Ok(())
}

/// `order` must list `samples` indices below `samples` (a permutation, in practice).
pub fn order(order: &[u32], samples: usize) -> Result<()> {
    if order.len() != samples || order.iter().any(|&i| i as usize >= samples) {
        return Err(Error::invalid("sample order", "not a list of indices into the dataset"));
    }
    Ok(())
}

/// Samples `start..start + count` must lie inside a dataset of `samples`.
pub fn batch(start: usize, count: usize, samples: usize) -> Result<()> {
    if start + count > samples {
        return Err(Error::invalid("batch", alloc::format!("samples {start}..{} of {samples}", start + count)));
    }
    Ok(())
}

pub fn load_batch(
    x: usize,
    labels: usize,
    start: usize,
    count: usize,
    samples: usize,
    sample_len: usize,
) -> Result<()> {
    batch(start, count, samples)?;
    length("load_batch", "x", x, count * sample_len)?;
    length("load_batch", "labels", labels, count)
}

pub fn conv2d_forward(out: usize, inp: usize, params: usize, kernel: Span, bias: Span, d: &Conv2dDims) -> Result<()> {
    let op = "conv2d_forward";
    length(op, "out", out, d.batch * d.out_len())?;
    length(op, "inp", inp, d.batch * d.in_len())?;
    span(op, params, kernel, d.patch_len() * d.out_channels)?;
    span(op, params, bias, d.out_channels)
}

#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    dinp: Option<usize>,
    dparams: usize,
    dout: usize,
    out: usize,
    inp: usize,
    params: usize,
    kernel: Span,
    bias: Span,
    d: &Conv2dDims,
) -> Result<()> {
    let op = "conv2d_backward";
    let (in_len, out_len, kernel_len) = (d.in_len(), d.out_len(), d.patch_len() * d.out_channels);
    length(op, "dout", dout, d.batch * out_len)?;
    length(op, "out", out, d.batch * out_len)?;
    length(op, "inp", inp, d.batch * in_len)?;
    if let Some(dinp) = dinp {
        length(op, "dinp", dinp, d.batch * in_len)?;
    }
    span(op, params, kernel, kernel_len)?;
    span(op, params, bias, d.out_channels)?;
    span(op, dparams, kernel, kernel_len)?;
    span(op, dparams, bias, d.out_channels)?;
    disjoint(op, kernel, bias)
}

pub fn maxpool2d_forward(out: usize, argmax: usize, inp: usize, d: &PoolDims) -> Result<()> {
    let op = "maxpool2d_forward";
    length(op, "out", out, d.batch * d.out_len())?;
    length(op, "argmax", argmax, d.batch * d.out_len())?;
    length(op, "inp", inp, d.batch * d.in_len())
}

pub fn maxpool2d_backward(dinp: usize, argmax: usize, dout: usize, d: &PoolDims) -> Result<()> {
    let op = "maxpool2d_backward";
    length(op, "dinp", dinp, d.batch * d.in_len())?;
    length(op, "argmax", argmax, d.batch * d.out_len())?;
    length(op, "dout", dout, d.batch * d.out_len())
}

pub fn dense_forward(out: usize, inp: usize, params: usize, kernel: Span, bias: Span, d: &DenseDims) -> Result<()> {
    let op = "dense_forward";
    length(op, "out", out, d.batch * d.outputs)?;
    length(op, "inp", inp, d.batch * d.inputs)?;
    span(op, params, kernel, d.inputs * d.outputs)?;
    span(op, params, bias, d.outputs)
}

#[allow(clippy::too_many_arguments)]
pub fn dense_backward(
    dinp: Option<usize>,
    dparams: usize,
    dout: usize,
    out: usize,
    inp: usize,
    params: usize,
    kernel: Span,
    bias: Span,
    d: &DenseDims,
) -> Result<()> {
    let op = "dense_backward";
    let (b, i, o) = (d.batch, d.inputs, d.outputs);
    length(op, "dout", dout, b * o)?;
    length(op, "out", out, b * o)?;
    length(op, "inp", inp, b * i)?;
    if let Some(dinp) = dinp {
        length(op, "dinp", dinp, b * i)?;
    }
    span(op, params, kernel, i * o)?;
    span(op, params, bias, o)?;
    span(op, dparams, kernel, i * o)?;
    span(op, dparams, bias, o)?;
    disjoint(op, kernel, bias)
}

pub fn softmax_xent_forward(
    probs: usize,
    metrics: usize,
    logits: usize,
    labels: usize,
    batch: usize,
    classes: usize,
) -> Result<()> {
    let op = "softmax_xent_forward";
    length(op, "probs", probs, batch * classes)?;
    length(op, "logits", logits, batch * classes)?;
    length(op, "labels", labels, batch)?;
    length(op, "metrics", metrics, METRICS_LEN)
}

pub fn softmax_xent_backward(dlogits: usize, probs: usize, labels: usize, batch: usize, classes: usize) -> Result<()> {
    let op = "softmax_xent_backward";
    length(op, "dlogits", dlogits, batch * classes)?;
    length(op, "probs", probs, batch * classes)?;
    length(op, "labels", labels, batch)
}

/// Adadelta's three state buffers must be exactly as long as the parameters.
pub fn adadelta_step(params: usize, accum_grad: usize, accum_update: usize, grads: usize) -> Result<()> {
    for (what, len) in [("accum_grad", accum_grad), ("accum_update", accum_update), ("grads", grads)] {
        if len != params {
            return Err(Error::Backend {
                op: "adadelta_step".into(),
                message: alloc::format!("{what} has {len} values, params {params}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn short_buffers_and_misplaced_spans_are_named() {
        let d = Conv2dDims { batch: 2, height: 5, width: 5, in_channels: 1, out_channels: 4, kernel: 3 };
        let (kernel, bias) = (Span { offset: 0, len: 36 }, Span { offset: 36, len: 4 });
        assert!(conv2d_forward(2 * 36, 2 * 25, 40, kernel, bias, &d).is_ok());
        let short = conv2d_forward(2 * 36 - 1, 2 * 25, 40, kernel, bias, &d).unwrap_err().to_string();
        assert!(short.contains("conv2d_forward") && short.contains("out holds 71 values but 72 are needed"), "{short}");
        let outside = conv2d_forward(2 * 36, 2 * 25, 39, kernel, bias, &d).unwrap_err().to_string();
        assert!(outside.contains("does not fit 4 values in a buffer of 39"), "{outside}");
        let wrong_len = dense_forward(
            6,
            6,
            100,
            Span { offset: 0, len: 8 },
            Span { offset: 9, len: 3 },
            &DenseDims { batch: 2, inputs: 3, outputs: 3 },
        );
        assert!(wrong_len.unwrap_err().to_string().contains("does not fit 9 values"));
        assert!(conv2d_backward(Some(2 * 25 - 1), 40, 72, 72, 50, 40, kernel, bias, &d)
            .unwrap_err()
            .to_string()
            .contains("dinp holds 49"));
        let overlapping = Span { offset: 35, len: 4 };
        assert!(conv2d_backward(None, 40, 72, 72, 50, 40, kernel, overlapping, &d)
            .unwrap_err()
            .to_string()
            .contains("kernel and bias spans overlap"));
        let dd = DenseDims { batch: 2, inputs: 3, outputs: 3 };
        let (dk, db) = (Span { offset: 0, len: 9 }, Span { offset: 8, len: 3 });
        assert!(dense_backward(None, 12, 6, 6, 6, 12, dk, db, &dd)
            .unwrap_err()
            .to_string()
            .contains("kernel and bias spans overlap"));
        assert!(dense_backward(None, 12, 6, 6, 6, 12, dk, Span { offset: 9, len: 3 }, &dd).is_ok());
        assert!(softmax_xent_forward(20, METRICS_LEN - 1, 20, 2, 2, 10)
            .unwrap_err()
            .to_string()
            .contains("metrics holds 1"));
    }
}
