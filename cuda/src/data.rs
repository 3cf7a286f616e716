//! Datasets on the device (data.cu): u8 images and labels uploaded once, the epoch's sample
//! order, and the batch gather that scales to [0, 1] on the device. Leaves out: decoding and
//! shuffling (mnist-core's codecs and data.rs).

use mnist_core::backend::DeviceDataset;
use mnist_core::Result;

use crate::device::{elementwise, Arg, CudaBuffer, Device};
use crate::graph::StepGraphs;
use crate::kernels::Kernel;

/// A dataset resident on the device: u8 images and labels, and the u32 sample order.
pub struct CudaDataset {
    pub(crate) images: CudaBuffer<u8>, // (N, sample_len)
    pub(crate) labels: CudaBuffer<u8>, // (N)
    pub(crate) order: CudaBuffer<u32>, // (N): a permutation of 0..N
    pub(crate) sample_len: usize,
}

impl CudaDataset {
    pub fn len(&self) -> usize {
        self.labels.len
    }
    pub fn is_empty(&self) -> bool {
        self.labels.len == 0
    }
}

impl DeviceDataset for CudaDataset {
    fn len(&self) -> usize {
        self.labels.len
    }
    fn sample_len(&self) -> usize {
        self.sample_len
    }
}

/// `Backend::upload_dataset`, checked: the order starts as 0..N.
pub(crate) fn upload(device: &Device, images: &[u8], labels: &[u8], sample_len: usize) -> Result<CudaDataset> {
    let order: Vec<u32> = (0..labels.len() as u32).collect();
    Ok(CudaDataset {
        images: device.upload_new(images)?,
        labels: device.upload_new(labels)?,
        order: device.upload_new(&order)?,
        sample_len,
    })
}

/// `Backend::set_order`, checked (N indices below N).
pub(crate) fn set_order(device: &Device, data: &mut CudaDataset, order: &[u32]) -> Result<()> {
    device.copy_in(&mut data.order, order)
}

/// `Backend::load_batch`, checked: x (count, sample_len) and labels (count) gathered in the
/// dataset's order from `start`, which a recorded step reads from the device.
pub(crate) fn load_batch(
    device: &Device,
    graphs: &StepGraphs,
    x: &mut CudaBuffer<f32>,
    labels: &mut CudaBuffer<u32>,
    data: &CudaDataset,
    start: usize,
    count: usize,
) -> Result<()> {
    let n = data.sample_len;
    if count == 0 {
        return Ok(());
    }
    let start_at = graphs.value_at("load_batch", 0, start as u64)?;
    let args = [
        Arg::Ptr(x.ptr),
        Arg::Ptr(labels.ptr),
        Arg::Ptr(data.images.ptr),
        Arg::Ptr(data.labels.ptr),
        Arg::Ptr(data.order.ptr),
        Arg::I64(start as i64),
        Arg::Ptr(start_at),
        Arg::I64(count as i64),
        Arg::I64(n as i64),
    ];
    // SAFETY: load_batch(float* x, u32* labels, const u8* images, const u8* all_labels,
    // const u32* order, i64 start, const u64* start_at, i64 count, i64 sample_len). x and
    // labels hold count samples (checked); start + count <= N, and set_order keeps every
    // order entry < N, so the gathers stay inside images (N * sample_len) and all_labels
    // (N). start_at is null or the step values' slot 0, which begin_step checks the same way
    // before every replay.
    unsafe { device.launch(Kernel::LoadBatch, elementwise(count * n), &args) }
}
