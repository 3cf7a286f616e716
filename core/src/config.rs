//! The architecture as a value: Keras's mnist_cnn by default, tiny variants for tests.
//! Also the parameter table (one flat buffer of named, shaped slices) derived from it.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, Result};

/// conv(3x3, valid, relu) -> conv(3x3, valid, relu) -> maxpool -> dropout -> flatten (HWC)
/// -> dense(relu) -> dropout -> dense -> softmax. Every number is a field so tests can shrink it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub conv1_filters: usize,
    pub conv2_filters: usize,
    pub kernel: usize,
    pub pool: usize,
    pub dropout1: f32,
    pub hidden: usize,
    pub dropout2: f32,
    pub classes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config::keras_mnist_cnn()
    }
}

impl Config {
    /// The Keras `mnist_cnn.py` example: 1,199,882 parameters.
    pub const fn keras_mnist_cnn() -> Self {
        Config {
            height: 28,
            width: 28,
            channels: 1,
            conv1_filters: 32,
            conv2_filters: 64,
            kernel: 3,
            pool: 2,
            dropout1: 0.25,
            hidden: 128,
            dropout2: 0.5,
            classes: 10,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("height", self.height),
            ("width", self.width),
            ("channels", self.channels),
            ("conv1_filters", self.conv1_filters),
            ("conv2_filters", self.conv2_filters),
            ("kernel", self.kernel),
            ("pool", self.pool),
            ("hidden", self.hidden),
            ("classes", self.classes),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::invalid("config", alloc::format!("{name} must be positive")));
            }
            if value > 1 << 16 {
                return Err(Error::invalid("config", alloc::format!("{name} = {value} is absurdly large")));
            }
        }
        if self.classes < 2 {
            return Err(Error::invalid("config", "at least two classes are needed"));
        }
        if self.height < 2 * (self.kernel - 1) + self.pool || self.width < 2 * (self.kernel - 1) + self.pool {
            return Err(Error::invalid("config", "the image is too small for two convolutions and a pooling"));
        }
        for (name, rate) in [("dropout1", self.dropout1), ("dropout2", self.dropout2)] {
            if !(0.0..1.0).contains(&rate) {
                return Err(Error::invalid("config", alloc::format!("{name} = {rate} must be in [0, 1)")));
            }
        }
        if self.param_count() > 1 << 28 {
            return Err(Error::invalid("config", "more than 2^28 parameters"));
        }
        Ok(())
    }

    /// Output of conv1: (H1, W1, C1).
    pub fn conv1_out(&self) -> (usize, usize, usize) {
        (self.height - self.kernel + 1, self.width - self.kernel + 1, self.conv1_filters)
    }
    /// Output of conv2: (H2, W2, C2).
    pub fn conv2_out(&self) -> (usize, usize, usize) {
        let (h, w, _) = self.conv1_out();
        (h - self.kernel + 1, w - self.kernel + 1, self.conv2_filters)
    }
    /// Output of the pooling: (HP, WP, C2); like Keras, a ragged edge is dropped.
    pub fn pool_out(&self) -> (usize, usize, usize) {
        let (h, w, c) = self.conv2_out();
        (h / self.pool, w / self.pool, c)
    }
    pub fn input_len(&self) -> usize {
        self.height * self.width * self.channels
    }
    pub fn flat_len(&self) -> usize {
        let (h, w, c) = self.pool_out();
        h * w * c
    }
    pub fn param_count(&self) -> usize {
        self.layout().total()
    }

    /// The flat parameter table, in Keras's order and shapes.
    pub fn layout(&self) -> ParamLayout {
        let k = self.kernel;
        let entries: [(&str, Vec<usize>); 8] = [
            ("conv2d_1/kernel", alloc::vec![k, k, self.channels, self.conv1_filters]),
            ("conv2d_1/bias", alloc::vec![self.conv1_filters]),
            ("conv2d_2/kernel", alloc::vec![k, k, self.conv1_filters, self.conv2_filters]),
            ("conv2d_2/bias", alloc::vec![self.conv2_filters]),
            ("dense_1/kernel", alloc::vec![self.flat_len(), self.hidden]),
            ("dense_1/bias", alloc::vec![self.hidden]),
            ("dense_2/kernel", alloc::vec![self.hidden, self.classes]),
            ("dense_2/bias", alloc::vec![self.classes]),
        ];
        let mut slots = Vec::with_capacity(entries.len());
        let mut offset = 0;
        for (name, shape) in entries {
            let len = shape.iter().product();
            slots.push(ParamSlot { name: String::from(name), shape, offset, len });
            offset += len;
        }
        ParamLayout { slots }
    }
}

/// A contiguous range of a flat buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

impl Span {
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// One named, shaped slice of the flat parameter buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSlot {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

impl ParamSlot {
    pub fn span(&self) -> Span {
        Span { offset: self.offset, len: self.len }
    }
}

/// Parameters, their gradients and both Adadelta accumulators all use this table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamLayout {
    pub slots: Vec<ParamSlot>,
}

/// Indices into `ParamLayout::slots`, fixed by `Config::layout`.
pub const CONV1_KERNEL: usize = 0;
pub const CONV1_BIAS: usize = 1;
pub const CONV2_KERNEL: usize = 2;
pub const CONV2_BIAS: usize = 3;
pub const DENSE1_KERNEL: usize = 4;
pub const DENSE1_BIAS: usize = 5;
pub const DENSE2_KERNEL: usize = 6;
pub const DENSE2_BIAS: usize = 7;

impl ParamLayout {
    pub fn total(&self) -> usize {
        self.slots.last().map_or(0, |s| s.offset + s.len)
    }
    pub fn get(&self, name: &str) -> Option<&ParamSlot> {
        self.slots.iter().find(|s| s.name == name)
    }
    pub fn span(&self, index: usize) -> Span {
        self.slots[index].span()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_model_has_1199882_parameters() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.flat_len(), 9216);
        assert_eq!(config.param_count(), 1_199_882);
        let layout = config.layout();
        assert_eq!(layout.get("dense_1/kernel").unwrap().shape, [9216, 128]);
        assert_eq!(layout.get("conv2d_2/kernel").unwrap().shape, [3, 3, 32, 64]);
    }

    #[test]
    fn bad_configs_are_rejected() {
        for bad in [
            Config { dropout1: 1.0, ..Config::default() },
            Config { height: 5, ..Config::default() },
            Config { classes: 0, ..Config::default() },
            Config { classes: 1, ..Config::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
