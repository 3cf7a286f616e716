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

/// The number of values in a buffer of these dimensions, or an error when a usize cannot count
/// them (the lengths checked against it would wrap around and pass).
fn values(op: &str, what: &str, factors: &[usize]) -> Result<usize> {
    factors.iter().try_fold(1usize, |n, &f| n.checked_mul(f)).ok_or_else(|| Error::Backend {
        op: op.into(),
        message: alloc::format!("{what} of dimensions {factors:?} would hold more values than a usize counts"),
    })
}

/// `span` must be exactly `need` values long and lie inside a buffer of `buffer` values.
pub fn span(op: &str, buffer: usize, span: Span, need: usize) -> Result<()> {
    if span.len != need || span.offset.checked_add(span.len).is_none_or(|end| end > buffer) {
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
    if start.checked_add(count).is_none_or(|end| end > samples) {
        let end = start.saturating_add(count);
        return Err(Error::invalid("batch", alloc::format!("samples {start}..{end} of {samples}")));
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
    length("load_batch", "x", x, values("load_batch", "x", &[count, sample_len])?)?;
    length("load_batch", "labels", labels, count)
}

/// A convolution's (input, output, kernel) lengths in values: its kernel must fit its image
/// (a larger one has no output: its size would wrap around) and a usize must count them.
fn conv2d_lens(op: &str, d: &Conv2dDims) -> Result<(usize, usize, usize)> {
    if d.kernel == 0 || d.kernel > d.height || d.kernel > d.width {
        return Err(Error::Backend {
            op: op.into(),
            message: alloc::format!("a {0}x{0} kernel does not fit {1}x{2} images", d.kernel, d.height, d.width),
        });
    }
    let inp = values(op, "inp", &[d.batch, d.height, d.width, d.in_channels])?;
    let out = values(op, "out", &[d.batch, d.out_height(), d.out_width(), d.out_channels])?;
    let kernel = values(op, "kernel", &[d.kernel, d.kernel, d.in_channels, d.out_channels])?;
    Ok((inp, out, kernel))
}

pub fn conv2d_forward(out: usize, inp: usize, params: usize, kernel: Span, bias: Span, d: &Conv2dDims) -> Result<()> {
    let op = "conv2d_forward";
    let (inp_len, out_len, kernel_len) = conv2d_lens(op, d)?;
    length(op, "out", out, out_len)?;
    length(op, "inp", inp, inp_len)?;
    span(op, params, kernel, kernel_len)?;
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
    let (in_len, out_len, kernel_len) = conv2d_lens(op, d)?;
    length(op, "dout", dout, out_len)?;
    length(op, "out", out, out_len)?;
    length(op, "inp", inp, in_len)?;
    if let Some(dinp) = dinp {
        length(op, "dinp", dinp, in_len)?;
    }
    span(op, params, kernel, kernel_len)?;
    span(op, params, bias, d.out_channels)?;
    span(op, dparams, kernel, kernel_len)?;
    span(op, dparams, bias, d.out_channels)?;
    disjoint(op, kernel, bias)
}

/// A pooling's (input, output) lengths in values: a window of at least 1, and lengths that a
/// usize counts.
fn pool_lens(op: &str, d: &PoolDims) -> Result<(usize, usize)> {
    if d.pool == 0 {
        return Err(Error::Backend { op: op.into(), message: "a pooling window of 0".into() });
    }
    let inp = values(op, "inp", &[d.batch, d.height, d.width, d.channels])?;
    Ok((inp, values(op, "out", &[d.batch, d.out_height(), d.out_width(), d.channels])?))
}

pub fn maxpool2d_forward(out: usize, argmax: usize, inp: usize, d: &PoolDims) -> Result<()> {
    let op = "maxpool2d_forward";
    let (in_len, out_len) = pool_lens(op, d)?;
    length(op, "out", out, out_len)?;
    length(op, "argmax", argmax, out_len)?;
    length(op, "inp", inp, in_len)
}

pub fn maxpool2d_backward(dinp: usize, argmax: usize, dout: usize, d: &PoolDims) -> Result<()> {
    let op = "maxpool2d_backward";
    let (in_len, out_len) = pool_lens(op, d)?;
    length(op, "dinp", dinp, in_len)?;
    length(op, "argmax", argmax, out_len)?;
    length(op, "dout", dout, out_len)
}

/// A dense layer's (input, output, kernel) lengths in values, if a usize counts them.
fn dense_lens(op: &str, d: &DenseDims) -> Result<(usize, usize, usize)> {
    let inp = values(op, "inp", &[d.batch, d.inputs])?;
    Ok((inp, values(op, "out", &[d.batch, d.outputs])?, values(op, "kernel", &[d.inputs, d.outputs])?))
}

pub fn dense_forward(out: usize, inp: usize, params: usize, kernel: Span, bias: Span, d: &DenseDims) -> Result<()> {
    let op = "dense_forward";
    let (in_len, out_len, kernel_len) = dense_lens(op, d)?;
    length(op, "out", out, out_len)?;
    length(op, "inp", inp, in_len)?;
    span(op, params, kernel, kernel_len)?;
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
    let (in_len, out_len, kernel_len) = dense_lens(op, d)?;
    length(op, "dout", dout, out_len)?;
    length(op, "out", out, out_len)?;
    length(op, "inp", inp, in_len)?;
    if let Some(dinp) = dinp {
        length(op, "dinp", dinp, in_len)?;
    }
    span(op, params, kernel, kernel_len)?;
    span(op, params, bias, d.outputs)?;
    span(op, dparams, kernel, kernel_len)?;
    span(op, dparams, bias, d.outputs)?;
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
    let rows = values(op, "probs", &[batch, classes])?;
    length(op, "probs", probs, rows)?;
    length(op, "logits", logits, rows)?;
    length(op, "labels", labels, batch)?;
    length(op, "metrics", metrics, METRICS_LEN)
}

pub fn softmax_xent_backward(dlogits: usize, probs: usize, labels: usize, batch: usize, classes: usize) -> Result<()> {
    let op = "softmax_xent_backward";
    let rows = values(op, "dlogits", &[batch, classes])?;
    length(op, "dlogits", dlogits, rows)?;
    length(op, "probs", probs, rows)?;
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

    /// Sizes whose sums or products wrap around a usize used to pass (in release builds; debug
    /// ones panicked): a batch ending past usize::MAX "inside" a dataset of 5, a span reaching
    /// past the end, dims whose lengths overflow, a kernel larger than its image (its output
    /// size wrapped) and a pooling window of 0 (a division by zero).
    #[test]
    fn sizes_that_would_wrap_around_are_refused() {
        let message = |r: Result<()>| r.unwrap_err().to_string();
        assert!(batch(5, 0, 5).is_ok());
        assert!(message(batch(usize::MAX, 2, 5)).contains(&alloc::format!("samples {}..", usize::MAX)));
        assert!(message(load_batch(8, 2, usize::MAX - 1, 2, 5, 4)).contains("of 5"));
        let huge = 1 << (usize::BITS / 2);
        assert!(message(load_batch(8, 2, 0, huge, usize::MAX, huge)).contains("more values than a usize"));
        let end = Span { offset: usize::MAX, len: 2 };
        assert!(message(span("op", 10, end, 2)).contains("does not fit 2 values in a buffer of 10"));

        let d = Conv2dDims { batch: 2, height: 5, width: 5, in_channels: 1, out_channels: 4, kernel: 3 };
        let (kernel, bias) = (Span { offset: 0, len: 36 }, Span { offset: 36, len: 4 });
        let big = Conv2dDims { batch: huge, height: huge, ..d };
        assert!(message(conv2d_forward(72, 50, 40, kernel, bias, &big)).contains("more values than a usize"));
        let wide = Conv2dDims { kernel: 6, ..d };
        assert!(message(conv2d_forward(72, 50, 40, kernel, bias, &wide)).contains("a 6x6 kernel does not fit 5x5"));
        assert!(message(conv2d_backward(None, 40, 72, 72, 50, 40, kernel, bias, &wide)).contains("does not fit"));
        let empty = Conv2dDims { kernel: 0, ..d };
        assert!(message(conv2d_forward(72, 50, 40, kernel, bias, &empty)).contains("a 0x0 kernel"));

        let pool = PoolDims { batch: 1, height: 4, width: 4, channels: 1, pool: 0 };
        assert!(message(maxpool2d_forward(4, 4, 16, &pool)).contains("a pooling window of 0"));
        assert!(message(maxpool2d_backward(16, 4, 4, &pool)).contains("a pooling window of 0"));
        let pool = PoolDims { batch: huge, channels: huge, pool: 2, ..pool };
        assert!(message(maxpool2d_forward(4, 4, 16, &pool)).contains("more values than a usize"));

        let dense = DenseDims { batch: huge, inputs: huge, outputs: 3 };
        let (dk, db) = (Span { offset: 0, len: 9 }, Span { offset: 9, len: 3 });
        assert!(message(dense_forward(6, 6, 12, dk, db, &dense)).contains("more values than a usize"));
        assert!(message(dense_backward(None, 12, 6, 6, 6, 12, dk, db, &dense)).contains("more values than a usize"));
        assert!(message(softmax_xent_forward(20, 2, 20, 2, huge, huge)).contains("more values than a usize"));
        assert!(message(softmax_xent_backward(20, 20, 2, huge, huge)).contains("more values than a usize"));
    }
}
