//! The dimensions of each layer's operation, shared by the layers, the model and every backend.
//! Leaves out strides, padding and dilation: the Keras mnist_cnn family needs none.

/// A 3x3-style "valid" convolution, stride 1. Input (B, H, W, C), kernel (K, K, C, OC),
/// output (B, H-K+1, W-K+1, OC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dDims {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
}

impl Conv2dDims {
    pub fn out_height(&self) -> usize {
        self.height - self.kernel + 1
    }
    pub fn out_width(&self) -> usize {
        self.width - self.kernel + 1
    }
    pub fn in_len(&self) -> usize {
        self.height * self.width * self.in_channels
    }
    pub fn out_len(&self) -> usize {
        self.out_height() * self.out_width() * self.out_channels
    }
    /// One row of the im2col matrix: (K, K, C), the order of the kernel's leading axes.
    pub fn patch_len(&self) -> usize {
        self.kernel * self.kernel * self.in_channels
    }
}

/// Non-overlapping max pooling with a square window. Input (B, H, W, C),
/// output (B, H/P, W/P, C); a ragged edge is dropped, as in Keras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolDims {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub pool: usize,
}

impl PoolDims {
    pub fn out_height(&self) -> usize {
        self.height / self.pool
    }
    pub fn out_width(&self) -> usize {
        self.width / self.pool
    }
    pub fn in_len(&self) -> usize {
        self.height * self.width * self.channels
    }
    pub fn out_len(&self) -> usize {
        self.out_height() * self.out_width() * self.channels
    }
}

/// A fully connected layer: input (B, I), kernel (I, O), output (B, O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenseDims {
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
}
