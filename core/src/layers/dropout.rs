//! Inverted dropout (Keras's): keep with probability 1 - rate, scale kept values by 1/(1-rate).
//! The mask is a pure function of (seed, element index), so nothing is stored between forward
//! and backward, any thread split gives the same mask, and a GPU kernel can reproduce it.

use crate::data::mix64;

/// Elements whose hash (top 32 bits) is below this are dropped.
pub fn drop_threshold(rate: f32) -> u32 {
    ((rate as f64) * 4_294_967_296.0).min(u32::MAX as f64) as u32
}

/// Whether element `index` survives: splitmix64 evaluated at stream position `index`.
#[inline]
pub fn keep(seed: u64, index: u64, threshold: u32) -> bool {
    let hash = mix64(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    (hash >> 32) as u32 >= threshold
}

/// x *= mask / (1 - rate), in place; `first_index` is x[0]'s index in the whole buffer.
/// The backward pass is the same operation applied to the gradient.
pub fn dropout_apply(x: &mut [f32], first_index: usize, rate: f32, seed: u64) {
    if rate <= 0.0 {
        return;
    }
    let threshold = drop_threshold(rate);
    let scale = 1.0 / (1.0 - rate);
    for (i, v) in x.iter_mut().enumerate() {
        *v = if keep(seed, (first_index + i) as u64, threshold) { *v * scale } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn drops_about_rate_and_preserves_the_mean() {
        let n = 200_000;
        let mut x = vec![1.0f32; n];
        dropout_apply(&mut x, 0, 0.25, 42);
        let dropped = x.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.25).abs() < 0.005, "dropped {dropped}");
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert!(x.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    }

    #[test]
    fn mask_depends_only_on_seed_and_index() {
        let mut whole = vec![1.0f32; 1000];
        dropout_apply(&mut whole, 0, 0.5, 7);
        let mut parts = vec![1.0f32; 1000];
        let (a, b) = parts.split_at_mut(333);
        dropout_apply(a, 0, 0.5, 7);
        dropout_apply(b, 333, 0.5, 7);
        assert_eq!(whole, parts);
        let mut other = vec![1.0f32; 1000];
        dropout_apply(&mut other, 0, 0.5, 8);
        assert_ne!(whole, other);
    }

    #[test]
    fn gradient_is_the_same_linear_map() {
        // Dropout is linear in x for a fixed mask: d(sum(r * f(x)))/dx = f(r).
        let r: alloc::vec::Vec<f32> = (0..64).map(|i| i as f32 - 30.0).collect();
        let mut g = r.clone();
        dropout_apply(&mut g, 5, 0.5, 3);
        for i in 0..64 {
            let mut e = vec![0.0f32; 64];
            e[i] = 1.0;
            dropout_apply(&mut e, 5, 0.5, 3);
            let fd: f32 = r.iter().zip(&e).map(|(a, b)| a * b).sum();
            assert_eq!(fd, g[i]);
        }
    }
}
