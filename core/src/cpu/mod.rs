//! CpuBackend: the reference and the fast CPU path. Batches are split evenly across a fixed
//! pool of threads, each running cache-sized, single-threaded sgemms on its own samples with
//! its own scratch; partial weight gradients are summed in a fixed order, so results are
//! bit-identical for a given thread count. Scratch grows on a convolution shape's first call, so
//! later steps allocate nothing. Argument checks are the `Backend` trait's (made before each op).

mod pool;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::backend::{Backend, Checked, DeviceDataset};
use crate::config::Span;
use crate::error::{Error, Result};
use crate::layers::{conv2d, conv2d_direct, conv2d_winograd, dense, dropout, maxpool2d, relu, softmax_xent};
use crate::optim::adadelta_update;
use crate::optim::Adadelta;
use crate::shape::{Conv2dDims, DenseDims, PoolDims};
pub use pool::{part_range, Pool, SharedMut};

/// Per-thread scratch: im2col matrices, Winograd tiles and partial conv gradients.
#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    dcol: Vec<f32>,
    dkernel: Vec<f32>,
    dbias: Vec<f32>,
    winograd_v: Vec<f32>,  // (36, T, C): input tiles, then their gradient
    winograd_m: Vec<f32>,  // (36, T, OC): output tiles, then their gradient
    winograd_du: Vec<f32>, // (36, C, OC): this thread's share of the transformed kernel's gradient
}

pub struct CpuBackend {
    pool: Pool,
    scratch: Vec<Scratch>,
    /// Fast convolutions (Winograd F(4x4, 3x3) for 3x3 kernels over 8k channels, direct for
    /// short receptive fields) unless turned off for the im2col reference.
    fast_convolutions: bool,
    winograd_u: Vec<f32>, // (36, C, OC): the kernel being applied, transformed
    /// The kernel (and its shape) that `winograd_u` was made from: a backward pass, or the
    /// next forward with unchanged weights (inference), reuses the transform.
    winograd_kernel: Vec<f32>,
    winograd_dims: Option<(usize, usize)>,
}

/// The dataset, kept as u8 until a batch needs floats.
pub struct CpuDataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    order: Vec<u32>,
    sample_len: usize,
}

impl CpuDataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl DeviceDataset for CpuDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn sample_len(&self) -> usize {
        self.sample_len
    }
}

/// Two disjoint spans of one buffer, mutably (the trait's checks have already refused overlapping
/// ones; this keeps the split safe on its own).
fn two_spans_mut<'a>(
    buffer: &'a mut [f32],
    first: Span,
    second: Span,
    op: &str,
) -> Result<(&'a mut [f32], &'a mut [f32])> {
    if first.offset + first.len <= second.offset {
        let (a, b) = buffer.split_at_mut(second.offset);
        Ok((&mut a[first.range()], &mut b[..second.len]))
    } else if second.offset + second.len <= first.offset {
        let (a, b) = buffer.split_at_mut(first.offset);
        Ok((&mut b[..first.len], &mut a[second.range()]))
    } else {
        Err(Error::Backend { op: op.into(), message: "kernel and bias spans overlap".into() })
    }
}

impl CpuBackend {
    /// A backend on `threads` threads (0 = all available cores).
    pub fn new(threads: usize) -> Self {
        let threads = if threads == 0 { available_threads() } else { threads };
        let pool = Pool::new(threads);
        let scratch = (0..pool.threads()).map(|_| Scratch::default()).collect();
        CpuBackend {
            pool,
            scratch,
            fast_convolutions: true,
            winograd_u: Vec::new(),
            winograd_kernel: Vec::new(),
            winograd_dims: None,
        }
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Turns the fast convolutions off (im2col + sgemm for every shape: the reference path,
    /// for comparisons and benchmarks) or back on.
    pub fn set_fast_convolutions(&mut self, on: bool) {
        self.fast_convolutions = on;
    }

    fn uses_winograd(&self, d: &Conv2dDims) -> bool {
        self.fast_convolutions && conv2d_winograd::applies(d)
    }

    fn uses_direct(&self, d: &Conv2dDims) -> bool {
        self.fast_convolutions && !self.uses_winograd(d) && conv2d_direct::applies(d)
    }

    fn grow_scratch(&mut self, d: &Conv2dDims) {
        let col = d.out_height() * d.out_width() * d.patch_len();
        let kernel = d.patch_len() * d.out_channels;
        let (winograd, direct) = (self.uses_winograd(d), self.uses_direct(d));
        for s in &mut self.scratch {
            grow(&mut s.dkernel, kernel);
            grow(&mut s.dbias, d.out_channels);
            if winograd {
                grow(&mut s.winograd_v, conv2d_winograd::input_scratch_len(d));
                grow(&mut s.winograd_m, conv2d_winograd::output_scratch_len(d));
                grow(&mut s.winograd_du, conv2d_winograd::transformed_kernel_len(d));
            } else if !direct {
                grow(&mut s.col, col);
                grow(&mut s.dcol, col);
            }
        }
        if winograd {
            grow(&mut self.winograd_u, conv2d_winograd::transformed_kernel_len(d));
            let kernel_len = d.patch_len() * d.out_channels;
            if self.winograd_kernel.capacity() < kernel_len {
                self.winograd_kernel.reserve(kernel_len - self.winograd_kernel.len());
            }
        }
    }
}

impl CpuBackend {
    /// Makes `winograd_u` hold `kernel` transformed, unless it already does (the kernel is
    /// compared value for value: cheap next to transforming it).
    fn transform_kernel(&mut self, kernel: &[f32], d: &Conv2dDims) {
        let u = &mut self.winograd_u[..conv2d_winograd::transformed_kernel_len(d)];
        let dims = Some((d.in_channels, d.out_channels));
        if self.winograd_dims != dims || self.winograd_kernel != kernel {
            conv2d_winograd::kernel_transform(u, kernel, d);
            self.winograd_kernel.clear();
            self.winograd_kernel.extend_from_slice(kernel);
            self.winograd_dims = dims;
        }
    }

    /// Picks how a convolution of shape `d` runs and readies it (scratch, and the Winograd
    /// kernel transform, which the backward pass reuses), after the buffers were checked.
    fn conv_path(&mut self, kernel: &[f32], d: &Conv2dDims) -> ConvPath {
        self.grow_scratch(d);
        if self.uses_winograd(d) {
            self.transform_kernel(kernel, d);
            ConvPath::Winograd
        } else if self.uses_direct(d) {
            ConvPath::Direct
        } else {
            ConvPath::Im2col
        }
    }
}

/// How a convolution runs (see `CpuBackend::conv_path`).
#[derive(Clone, Copy, PartialEq)]
enum ConvPath {
    Winograd,
    Direct,
    Im2col,
}

fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

#[cfg(feature = "std")]
fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(not(feature = "std"))]
fn available_threads() -> usize {
    1
}

impl Backend for CpuBackend {
    type Buffer = Vec<f32>;
    type Indices = Vec<u32>;
    type Dataset = CpuDataset;
    /// Nothing: every CPU path recomputes what its backward needs from the input.
    type Conv2dSaved = ();

    fn device_name(&self) -> String {
        let threads = self.threads();
        alloc::format!("cpu ({threads} thread{})", if threads == 1 { "" } else { "s" })
    }

    fn alloc(&mut self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }
    fn alloc_indices(&mut self, len: usize) -> Result<Vec<u32>> {
        Ok(vec![0; len])
    }
    fn alloc_conv2d_saved(&mut self, _dims: Conv2dDims) -> Result<()> {
        Ok(())
    }
    fn upload_checked(&mut self, _: Checked, dst: &mut Vec<f32>, src: &[f32]) -> Result<()> {
        dst[..src.len()].copy_from_slice(src);
        Ok(())
    }
    fn download_checked(&mut self, _: Checked, dst: &mut [f32], src: &Vec<f32>) -> Result<()> {
        dst.copy_from_slice(&src[..dst.len()]);
        Ok(())
    }
    fn fill(&mut self, dst: &mut Vec<f32>, value: f32) -> Result<()> {
        dst.fill(value);
        Ok(())
    }

    fn upload_dataset_checked(
        &mut self,
        _: Checked,
        images: &[u8],
        labels: &[u8],
        sample_len: usize,
    ) -> Result<CpuDataset> {
        Ok(CpuDataset {
            images: images.to_vec(),
            labels: labels.to_vec(),
            order: (0..labels.len() as u32).collect(),
            sample_len,
        })
    }

    fn set_order_checked(&mut self, _: Checked, data: &mut CpuDataset, order: &[u32]) -> Result<()> {
        data.order.copy_from_slice(order);
        Ok(())
    }

    fn load_batch_checked(
        &mut self,
        _: Checked,
        x: &mut Vec<f32>,
        labels: &mut Vec<u32>,
        data: &CpuDataset,
        start: usize,
        count: usize,
    ) -> Result<()> {
        let n = data.sample_len;
        for (label, &i) in labels.iter_mut().zip(&data.order[start..start + count]) {
            *label = data.labels[i as usize] as u32;
        }
        let parts = self.threads();
        let xs = SharedMut::new(&mut x[..count * n]);
        self.pool.run(&|part| {
            let range = part_range(count, parts, part);
            // SAFETY: each part writes the rows of its own samples.
            let rows = unsafe { xs.range_mut(range.start * n..range.end * n) };
            for (row, &i) in rows.chunks_exact_mut(n).zip(&data.order[start + range.start..start + range.end]) {
                let src = &data.images[i as usize * n..][..n];
                for (v, &b) in row.iter_mut().zip(src) {
                    *v = b as f32 * (1.0 / 255.0);
                }
            }
        });
        Ok(())
    }

    fn conv2d_forward_checked(
        &mut self,
        _: Checked,
        out: &mut Vec<f32>,
        _saved: &mut (),
        inp: &Vec<f32>,
        params: &Vec<f32>,
        kernel: Span,
        bias: Span,
        d: Conv2dDims,
        relu: bool,
    ) -> Result<()> {
        let (kernel, bias) = (&params[kernel.range()], &params[bias.range()]);
        let path = self.conv_path(kernel, &d);
        let u = &self.winograd_u[..];
        let (parts, in_len, out_len) = (self.pool.threads(), d.in_len(), d.out_len());
        let outs = SharedMut::new(&mut out[..d.batch * out_len]);
        let scratch = SharedMut::new(&mut self.scratch);
        self.pool.run(&|part| {
            let samples = part_range(d.batch, parts, part);
            // SAFETY: each part takes its own scratch and its own samples' outputs.
            let s = unsafe { &mut scratch.range_mut(part..part + 1)[0] };
            let out = unsafe { outs.range_mut(samples.start * out_len..samples.end * out_len) };
            for (o, b) in out.chunks_exact_mut(out_len).zip(samples) {
                let x = &inp[b * in_len..][..in_len];
                match path {
                    ConvPath::Winograd => conv2d_winograd::conv2d_winograd_forward(
                        o,
                        &mut s.winograd_v,
                        &mut s.winograd_m,
                        x,
                        u,
                        bias,
                        &d,
                        relu,
                    ),
                    ConvPath::Direct => conv2d_direct::conv2d_direct_forward(o, x, kernel, bias, &d, relu),
                    ConvPath::Im2col => conv2d::conv2d_forward(o, &mut s.col, x, kernel, bias, &d, relu),
                }
            }
        });
        Ok(())
    }

    fn conv2d_backward_checked(
        &mut self,
        _: Checked,
        dinp: Option<&mut Vec<f32>>,
        dparams: &mut Vec<f32>,
        dout: &mut Vec<f32>,
        _saved: &(),
        out: &Vec<f32>,
        inp: &Vec<f32>,
        params: &Vec<f32>,
        kernel: Span,
        bias: Span,
        d: Conv2dDims,
        relu: bool,
    ) -> Result<()> {
        let op = "conv2d_backward";
        let (in_len, out_len) = (d.in_len(), d.out_len());
        let weights = &params[kernel.range()];
        let path = self.conv_path(weights, &d);
        let u = &self.winograd_u[..];
        // Each part sums its samples' kernel gradient (with Winograd, the transformed kernel's)
        // and bias gradient in its own scratch.
        let winograd = path == ConvPath::Winograd;
        let grad_len =
            if winograd { conv2d_winograd::transformed_kernel_len(&d) } else { d.patch_len() * d.out_channels };
        let parts = self.pool.threads();
        let douts = SharedMut::new(&mut dout[..d.batch * out_len]);
        let dinps = dinp.map(|v| SharedMut::new(&mut v[..d.batch * in_len]));
        let scratch = SharedMut::new(&mut self.scratch);
        self.pool.run(&|part| {
            let samples = part_range(d.batch, parts, part);
            // SAFETY: each part takes its own scratch and its own samples' rows.
            let s = unsafe { &mut scratch.range_mut(part..part + 1)[0] };
            let dout = unsafe { douts.range_mut(samples.start * out_len..samples.end * out_len) };
            let mut dinp = dinps.as_ref().map(|v| unsafe { v.range_mut(samples.start * in_len..samples.end * in_len) });
            let dkernel = if winograd { &mut s.winograd_du[..grad_len] } else { &mut s.dkernel[..grad_len] };
            let dbias = &mut s.dbias[..d.out_channels];
            dkernel.fill(0.0);
            dbias.fill(0.0);
            for (i, b) in samples.enumerate() {
                let di = dinp.as_deref_mut().map(|v| &mut v[i * in_len..][..in_len]);
                let (dy, y, x) =
                    (&mut dout[i * out_len..][..out_len], &out[b * out_len..][..out_len], &inp[b * in_len..][..in_len]);
                match path {
                    ConvPath::Winograd => conv2d_winograd::conv2d_winograd_backward(
                        di,
                        dkernel,
                        dbias,
                        &mut s.winograd_v,
                        &mut s.winograd_m,
                        dy,
                        y,
                        x,
                        u,
                        &d,
                        relu,
                    ),
                    ConvPath::Direct => {
                        conv2d_direct::conv2d_direct_backward(di, dkernel, dbias, dy, y, x, weights, &d, relu)
                    }
                    ConvPath::Im2col => conv2d::conv2d_backward(
                        di,
                        dkernel,
                        dbias,
                        &mut s.col,
                        &mut s.dcol,
                        dy,
                        y,
                        x,
                        weights,
                        &d,
                        relu,
                    ),
                }
            }
        });
        // Sum the parts in a fixed order (deterministic for a thread count) into the first.
        let (first, rest) = self.scratch.split_at_mut(1);
        let first = &mut first[0];
        for s in rest.iter() {
            let (sum, part) =
                if winograd { (&mut first.winograd_du, &s.winograd_du) } else { (&mut first.dkernel, &s.dkernel) };
            for (a, b) in sum[..grad_len].iter_mut().zip(part) {
                *a += b;
            }
            for (a, b) in first.dbias[..d.out_channels].iter_mut().zip(&s.dbias) {
                *a += b;
            }
        }
        let (dk, db) = two_spans_mut(dparams, kernel, bias, op)?;
        if winograd {
            conv2d_winograd::kernel_transform_adjoint(dk, &first.winograd_du[..grad_len], &d);
        } else {
            dk.copy_from_slice(&first.dkernel[..grad_len]);
        }
        db.copy_from_slice(&first.dbias[..d.out_channels]);
        Ok(())
    }

    fn maxpool2d_forward_checked(
        &mut self,
        _: Checked,
        out: &mut Vec<f32>,
        argmax: &mut Vec<u32>,
        inp: &Vec<f32>,
        d: PoolDims,
    ) -> Result<()> {
        let (in_len, out_len) = (d.in_len(), d.out_len());
        let parts = self.threads();
        let outs = SharedMut::new(&mut out[..d.batch * out_len]);
        let argmaxes = SharedMut::new(&mut argmax[..d.batch * out_len]);
        self.pool.run(&|part| {
            let samples = part_range(d.batch, parts, part);
            let rows = samples.start * out_len..samples.end * out_len;
            // SAFETY: each part writes its own samples' rows.
            let (out, argmax) = unsafe { (outs.range_mut(rows.clone()), argmaxes.range_mut(rows)) };
            for ((o, a), b) in out.chunks_exact_mut(out_len).zip(argmax.chunks_exact_mut(out_len)).zip(samples) {
                maxpool2d::maxpool2d_forward(o, a, &inp[b * in_len..][..in_len], &d);
            }
        });
        Ok(())
    }

    fn maxpool2d_backward_checked(
        &mut self,
        _: Checked,
        dinp: &mut Vec<f32>,
        argmax: &Vec<u32>,
        dout: &Vec<f32>,
        d: PoolDims,
    ) -> Result<()> {
        let op = "maxpool2d_backward";
        let (in_len, out_len) = (d.in_len(), d.out_len());
        if argmax[..d.batch * out_len].iter().any(|&i| i as usize >= in_len) {
            return Err(Error::Backend { op: op.into(), message: "argmax index outside the sample".into() });
        }
        let parts = self.threads();
        let dinps = SharedMut::new(&mut dinp[..d.batch * in_len]);
        self.pool.run(&|part| {
            let samples = part_range(d.batch, parts, part);
            // SAFETY: each part writes its own samples' rows.
            let dinp = unsafe { dinps.range_mut(samples.start * in_len..samples.end * in_len) };
            for (di, b) in dinp.chunks_exact_mut(in_len).zip(samples) {
                maxpool2d::maxpool2d_backward(
                    di,
                    &argmax[b * out_len..][..out_len],
                    &dout[b * out_len..][..out_len],
                    &d,
                );
            }
        });
        Ok(())
    }

    fn dropout_forward_checked(
        &mut self,
        _: Checked,
        x: &mut Vec<f32>,
        len: usize,
        rate: f32,
        seed: u64,
    ) -> Result<()> {
        let parts = self.threads();
        let xs = SharedMut::new(&mut x[..len]);
        self.pool.run(&|part| {
            let range = part_range(len, parts, part);
            // SAFETY: disjoint element ranges.
            let x = unsafe { xs.range_mut(range.clone()) };
            dropout::dropout_apply(x, range.start, rate, seed);
        });
        Ok(())
    }

    fn dense_forward_checked(
        &mut self,
        _: Checked,
        out: &mut Vec<f32>,
        inp: &Vec<f32>,
        params: &Vec<f32>,
        kernel: Span,
        bias: Span,
        d: DenseDims,
        relu: bool,
    ) -> Result<()> {
        let (kernel, bias) = (&params[kernel.range()], &params[bias.range()]);
        let parts = self.threads();
        let outs = SharedMut::new(&mut out[..d.batch * d.outputs]);
        if d.batch < parts {
            // Fewer rows than threads (one image): split the output columns instead, in
            // blocks of 16, so each thread reads its share of the kernel (4.7 MB for dense1).
            self.pool.run(&|part| {
                let blocks = part_range(d.outputs.div_ceil(16), parts, part);
                let columns = (blocks.start * 16).min(d.outputs)..(blocks.end * 16).min(d.outputs);
                for row in 0..d.batch {
                    let at = row * d.outputs;
                    // SAFETY: each part writes its own columns of each row.
                    let out = unsafe { outs.range_mut(at + columns.start..at + columns.end) };
                    dense::dense_forward_columns(
                        out,
                        &inp[row * d.inputs..][..d.inputs],
                        kernel,
                        bias,
                        columns.clone(),
                        relu,
                    );
                }
            });
            return Ok(());
        }
        self.pool.run(&|part| {
            let rows = part_range(d.batch, parts, part);
            // SAFETY: each part writes its own rows.
            let out = unsafe { outs.range_mut(rows.start * d.outputs..rows.end * d.outputs) };
            dense::dense_forward(out, &inp[rows.start * d.inputs..rows.end * d.inputs], kernel, bias, d.inputs, relu);
        });
        Ok(())
    }

    fn dense_backward_checked(
        &mut self,
        _: Checked,
        dinp: Option<&mut Vec<f32>>,
        dparams: &mut Vec<f32>,
        dout: &mut Vec<f32>,
        out: &Vec<f32>,
        inp: &Vec<f32>,
        params: &Vec<f32>,
        kernel: Span,
        bias: Span,
        d: DenseDims,
        relu: bool,
    ) -> Result<()> {
        let (b, i, o) = (d.batch, d.inputs, d.outputs);
        let dout = &mut dout[..b * o];
        if relu {
            relu::relu_backward(dout, &out[..b * o]);
        }
        let dout = &*dout;
        dense::dense_backward_bias(&mut dparams[bias.range()], dout);
        let weights = &params[kernel.range()];
        let inp = &inp[..b * i];
        let parts = self.threads();
        let dkernels = SharedMut::new(&mut dparams[kernel.range()]);
        let dinps = dinp.map(|v| SharedMut::new(&mut v[..b * i]));
        self.pool.run(&|part| {
            // Kernel gradient split by input rows: no partial sums, so no reduction needed.
            let rows = part_range(i, parts, part);
            // SAFETY: disjoint rows of dkernel and of dinp.
            let dk = unsafe { dkernels.range_mut(rows.start * o..rows.end * o) };
            dense::dense_backward_kernel(dk, inp, dout, rows.start, i, o);
            if let Some(dinps) = &dinps {
                let samples = part_range(b, parts, part);
                let di = unsafe { dinps.range_mut(samples.start * i..samples.end * i) };
                dense::dense_backward_input(di, &dout[samples.start * o..samples.end * o], weights, i, o);
            }
        });
        Ok(())
    }

    fn softmax_xent_forward_checked(
        &mut self,
        _: Checked,
        probs: &mut Vec<f32>,
        metrics: &mut Vec<f32>,
        logits: &Vec<f32>,
        labels: &Vec<u32>,
        batch: usize,
        classes: usize,
    ) -> Result<()> {
        if labels[..batch].iter().any(|&l| l as usize >= classes) {
            return Err(Error::invalid("labels", alloc::format!("a label is not below the {classes} classes")));
        }
        let (loss_sum, correct) = softmax_xent::softmax_xent_forward(
            &mut probs[..batch * classes],
            &logits[..batch * classes],
            &labels[..batch],
            classes,
        );
        metrics[0] += loss_sum;
        metrics[1] += correct as f32;
        Ok(())
    }

    fn softmax_xent_backward_checked(
        &mut self,
        _: Checked,
        dlogits: &mut Vec<f32>,
        probs: &Vec<f32>,
        labels: &Vec<u32>,
        batch: usize,
        classes: usize,
    ) -> Result<()> {
        if labels[..batch].iter().any(|&l| l as usize >= classes) {
            return Err(Error::invalid("labels", alloc::format!("a label is not below the {classes} classes")));
        }
        softmax_xent::softmax_xent_backward(
            &mut dlogits[..batch * classes],
            &probs[..batch * classes],
            &labels[..batch],
            classes,
            batch,
        );
        Ok(())
    }

    fn adadelta_step_checked(
        &mut self,
        _: Checked,
        params: &mut Vec<f32>,
        accum_grad: &mut Vec<f32>,
        accum_update: &mut Vec<f32>,
        grads: &Vec<f32>,
        hyper: Adadelta,
    ) -> Result<()> {
        let n = params.len();
        let parts = self.threads();
        let (p, a, u) = (SharedMut::new(params), SharedMut::new(accum_grad), SharedMut::new(accum_update));
        self.pool.run(&|part| {
            let r = part_range(n, parts, part);
            // SAFETY: disjoint element ranges of three distinct buffers.
            let (p, a, u) = unsafe { (p.range_mut(r.clone()), a.range_mut(r.clone()), u.range_mut(r.clone())) };
            adadelta_update(p, a, u, &grads[r], hyper);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "std")]
    fn device_name_counts_threads_in_words() {
        assert_eq!(CpuBackend::new(1).device_name(), "cpu (1 thread)");
        assert_eq!(CpuBackend::new(2).device_name(), "cpu (2 threads)");
    }
}
