//! Test support: central finite differences in f64 and a tolerant comparison that prints the
//! first differing pairs. Each layer's test writes a naive f64 forward as the independent
//! reference, checks our f32 forward against it and our backward against its numeric gradient.

use alloc::vec::Vec;

use crate::data::Rng;

pub fn random_vec(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// d f / d x by central differences, f evaluated in f64.
pub fn numeric_grad(f: &dyn Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let saved = x[i];
            x[i] = saved + h;
            let up = f(&x);
            x[i] = saved - h;
            let down = f(&x);
            x[i] = saved;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Asserts |got - want| <= atol + rtol * |want| everywhere; on failure reports the first
/// differing pairs and the largest difference.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut bad = Vec::new();
    let mut max_diff = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let diff = (g as f64 - w).abs();
        max_diff = max_diff.max(diff);
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN must count as a difference
        if !(diff <= atol + rtol * w.abs()) {
            bad.push((i, g, w));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} values differ (max diff {max_diff:e}); first: {:?}",
        bad.len(),
        got.len(),
        &bad[..bad.len().min(5)]
    );
}

/// sum(y * r): a scalar loss whose gradient with respect to y is r.
pub fn dot(y: &[f64], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(&a, &b)| a * b as f64).sum()
}
