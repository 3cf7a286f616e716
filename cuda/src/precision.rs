//! The GEMMs' number format (`Precision`) and what bf16 and f16 need around the GEMMs
//! (precision.cu): f32 operands converted to half on the device, and f16's dynamic loss
//! scaling, whose state (scale, clean steps, overflow flag, skipped steps) lives on the device
//! and is updated by the kernels. Leaves out: the GEMMs themselves (gemm.rs).

use mnist_core::{Error, Result};

#[cfg(feature = "test-hooks")]
use crate::device::backend_error;
use crate::device::{elementwise, Arg, Device};
use crate::gemm::Operand;
use crate::kernels::Kernel;
use crate::scratch::HalfSlot;
use crate::CudaBackend;

/// f16 training's first loss scale (2^16, as PyTorch's GradScaler): halved on every step whose
/// gradients overflow (which is then skipped), doubled after LOSS_SCALE_GROWTH_INTERVAL clean
/// steps (update_loss_scale in precision.cu).
pub(crate) const LOSS_SCALE_START: f32 = 65536.0;
const LOSS_SCALE_GROWTH_INTERVAL: i32 = 2000;

/// The number format of the GEMMs' inputs. Every GEMM sums in f32 and writes f32; every other
/// op, the master weights and Adadelta's state stay f32 in all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// SGEMM with TF32 off: the CPU-vs-CUDA tolerances of 1e-4 hold.
    #[default]
    F32,
    /// bfloat16 inputs (8-bit mantissa, f32's range): no loss scaling needed.
    Bf16,
    /// IEEE half inputs (11-bit mantissa, at most 65504, normal down to 2^-14): the loss is
    /// scaled so small gradients survive, and steps whose gradients overflow are skipped.
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Whether a GPU of compute `capability` runs this precision's GEMMs.
    pub(crate) fn check(self, capability: (i32, i32)) -> Result<()> {
        if self == Precision::Bf16 && capability < (8, 0) {
            let (major, minor) = capability;
            return Err(Error::invalid(
                "precision bf16",
                format!(
                    "bf16 GEMMs need a GPU of compute capability 8.0 or newer; this one is {major}.{minor} (f16 works)"
                ),
            ));
        }
        Ok(())
    }
}

/// f16 training's loss scaling so far (`CudaBackend::loss_scale`); it starts at
/// LOSS_SCALE_START with each backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScale {
    /// The factor the loss gradient is multiplied by now.
    pub scale: f32,
    /// Steps skipped because their scaled gradients overflowed f16.
    pub skipped_steps: u64,
}

impl CudaBackend {
    /// Restarts f16 loss scaling at `scale` (a power of two, 1..=2^24) with no steps counted
    /// (a test hook: the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    pub fn set_loss_scale(&mut self, scale: f32) -> Result<()> {
        if !(1.0..=16_777_216.0).contains(&scale) || scale.log2().fract() != 0.0 {
            return Err(Error::invalid("loss scale", format!("{scale} is not a power of two in 1..=2^24")));
        }
        let Some(state) = self.loss_scale.as_mut() else {
            return Err(backend_error("set_loss_scale", "loss scaling is only used with f16 precision"));
        };
        self.device.copy_in(state, &[scale, 0.0, 0.0, 0.0])
    }

    /// f16 training's current loss scale and skipped steps (waits for the stream); None in
    /// f32 and bf16, which do not scale the loss.
    pub fn loss_scale(&mut self) -> Result<Option<LossScale>> {
        let Some(state) = self.loss_scale.as_ref() else {
            return Ok(None);
        };
        let mut host = [0.0f32; 4];
        self.device.copy_out("cuMemcpyDtoH (loss scale)", &mut host, state)?;
        Ok(Some(LossScale { scale: host[0], skipped_steps: host[3] as u64 }))
    }

    /// The loss scale state's address for the kernels that use it; null (none) unless f16.
    pub(crate) fn loss_scale_at(&self) -> u64 {
        self.loss_scale.as_ref().map_or(0, |s| s.ptr)
    }

    /// The half-precision address of a GEMM operand: a Half one as it is, an f32 one's first
    /// `len` values converted into scratch `slot`.
    pub(crate) fn half_operand(&mut self, slot: HalfSlot, operand: Operand, len: usize) -> Result<u64> {
        match operand {
            Operand::Half(ptr, _) => Ok(ptr),
            Operand::F32(ptr, _) => self.convert_to_half(slot, ptr, len),
        }
    }

    /// Where `bias_gradient` also writes the masked dout, in the same pass, for the two GEMMs
    /// that read it: HalfSlot::Dout with room for `len` values in bf16 and f16; nowhere (0) in f32.
    pub(crate) fn half_dout(&mut self, len: usize) -> Result<u64> {
        if self.precision == Precision::F32 {
            return Ok(0);
        }
        self.scratch.half(&self.device, &mut self.graphs, HalfSlot::Dout, len)
    }

    /// Converts `len` floats at `src` into half scratch `slot` (bf16 or f16, the precision's);
    /// returns the scratch's address.
    fn convert_to_half(&mut self, slot: HalfSlot, src: u64, len: usize) -> Result<u64> {
        let dst = self.scratch.half(&self.device, &mut self.graphs, slot, len)?;
        if len == 0 {
            return Ok(dst);
        }
        let args =
            [Arg::Ptr(dst), Arg::Ptr(src), Arg::I64(len as i64), Arg::I32((self.precision == Precision::Bf16) as i32)];
        // SAFETY: to_half(u16* dst, const float* src, i64 n, int bf16); dst holds >= len values
        // (Scratch::half) and callers pass src with >= len floats (a checked operand extent).
        unsafe { self.device.launch(Kernel::ToHalf, elementwise(len), &args) }?;
        Ok(dst)
    }
}

/// f16: flags a step whose scaled gradients (`n` at `grads`) overflowed, so that adadelta skips
/// it; `state` is the 4-value loss scale state.
pub(crate) fn check_finite(device: &Device, state: u64, grads: u64, n: usize) -> Result<()> {
    let args = [Arg::Ptr(state), Arg::Ptr(grads), Arg::I64(n as i64)];
    // SAFETY: check_finite(float* state, const float* x, i64 n); the state holds 4 values and
    // callers pass grads with n values (checked).
    unsafe { device.launch(Kernel::CheckFinite, elementwise(n), &args) }
}

/// f16: after the step's update, halves the scale after an overflow (counting the skipped step)
/// or doubles it after LOSS_SCALE_GROWTH_INTERVAL clean steps.
pub(crate) fn update_loss_scale(device: &Device, state: u64) -> Result<()> {
    let single = cudarc::driver::LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
    let args = [Arg::Ptr(state), Arg::I32(LOSS_SCALE_GROWTH_INTERVAL)];
    // SAFETY: update_loss_scale(float* state, int growth_interval), one thread, as it
    // requires; the state holds 4 values. Stream order puts it after adadelta's reads.
    unsafe { device.launch(Kernel::UpdateLossScale, single, &args) }
}
