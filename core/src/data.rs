//! Datasets held as u8 images (keep memory low until a batch needs floats), seeded
//! shuffling, and the small deterministic RNG used for shuffling, init and dropout seeds.
//! Leaves out: decoding files (codec/) and reading them from disk (the caller).

use alloc::vec::Vec;

use crate::error::{Error, Result};

/// Images (N, H, W, C) as u8, labels (N) as class indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl Dataset {
    pub fn new(images: Vec<u8>, labels: Vec<u8>, height: usize, width: usize, channels: usize) -> Result<Self> {
        let sample_len = height * width * channels;
        if sample_len == 0 {
            return Err(Error::invalid("dataset", "images have a zero-sized dimension"));
        }
        if images.len() != labels.len() * sample_len {
            return Err(Error::invalid(
                "dataset",
                alloc::format!(
                    "{} image bytes do not make {} images of {height}x{width}x{channels}",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        Ok(Dataset { images, labels, height, width, channels })
    }
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn sample_len(&self) -> usize {
        self.height * self.width * self.channels
    }
    /// Number of classes seen (max label + 1).
    pub fn classes_seen(&self) -> usize {
        self.labels.iter().copied().max().map_or(0, |m| m as usize + 1)
    }
    /// The first `n` samples (or all of them).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset { images: self.images[..n * self.sample_len()].to_vec(), labels: self.labels[..n].to_vec(), ..*self }
    }
}

/// MNIST-style train and test sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

/// splitmix64: a tiny, well-studied generator; enough for shuffling and init, and its
/// mixing function doubles as the counter-based hash behind dropout masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rng {
    pub state: u64,
}

/// The splitmix64 finaliser: a bijective mix of a 64-bit counter.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }
    /// Uniform in [0, 1) with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
    /// Uniform in [0, n) without modulo bias (Lemire's multiply-shift with rejection).
    pub fn below(&mut self, n: u32) -> u32 {
        let n64 = n as u64;
        loop {
            let x = self.next_u64() >> 32;
            let m = x * n64;
            let low = m as u32;
            if low >= n || low >= (n.wrapping_neg() % n) {
                return (m >> 32) as u32;
            }
        }
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle(&mut self, items: &mut [u32]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..1000).collect();
        let mut b = a.clone();
        Rng::new(7).shuffle(&mut a);
        Rng::new(7).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        let mut c: Vec<u32> = (0..1000).collect();
        Rng::new(8).shuffle(&mut c);
        assert_ne!(a, c);
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[rng.below(10) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn dataset_checks_sizes() {
        assert!(Dataset::new(alloc::vec![0; 10], alloc::vec![0; 2], 2, 2, 1).is_err());
        let d = Dataset::new(alloc::vec![0; 8], alloc::vec![0, 1], 2, 2, 1).unwrap();
        assert_eq!(d.take(1).len(), 1);
        assert_eq!(d.classes_seen(), 2);
    }
}
