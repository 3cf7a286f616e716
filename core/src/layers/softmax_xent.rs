//! Softmax followed by categorical cross-entropy on probabilities clipped to
//! [1e-7, 1 - 1e-7], as Keras 2 computes it; the loss of a batch is the mean over its rows.
//! Leaves out: label smoothing and class weights.

/// Keras's `epsilon()`: the clip applied to probabilities before the log.
pub const PROB_EPSILON: f32 = 1e-7;

fn clipped(p: f32) -> bool {
    !(PROB_EPSILON..=1.0 - PROB_EPSILON).contains(&p)
}

/// probs, logits: (B, classes); labels: (B). Returns (sum of the rows' losses, correct rows).
/// A label >= classes must be rejected by the caller.
pub fn softmax_xent_forward(probs: &mut [f32], logits: &[f32], labels: &[u32], classes: usize) -> (f32, u32) {
    let mut loss_sum = 0.0f32;
    let mut correct = 0;
    for ((p, z), &label) in probs.chunks_exact_mut(classes).zip(logits.chunks_exact(classes)).zip(labels) {
        let mut argmax = 0;
        for (j, &v) in z.iter().enumerate() {
            if v > z[argmax] {
                argmax = j;
            }
        }
        let max = z[argmax];
        let mut sum = 0.0f32;
        for (pj, &zj) in p.iter_mut().zip(z) {
            *pj = libm::expf(zj - max);
            sum += *pj;
        }
        for pj in p.iter_mut() {
            *pj /= sum;
        }
        let py = p[label as usize].clamp(PROB_EPSILON, 1.0 - PROB_EPSILON);
        loss_sum -= libm::logf(py);
        correct += (argmax == label as usize) as u32;
    }
    (loss_sum, correct)
}

/// dlogits (B, classes), overwritten: (probs - onehot) / divisor, where divisor is the batch
/// size (the loss is a mean); zero for a row whose true-class probability was clipped, as the
/// clip passes no gradient there.
pub fn softmax_xent_backward(dlogits: &mut [f32], probs: &[f32], labels: &[u32], classes: usize, divisor: usize) {
    let scale = 1.0 / divisor as f32;
    for ((d, p), &label) in dlogits.chunks_exact_mut(classes).zip(probs.chunks_exact(classes)).zip(labels) {
        if clipped(p[label as usize]) {
            d.fill(0.0);
            continue;
        }
        for (j, (dj, &pj)) in d.iter_mut().zip(p).enumerate() {
            let target = if j == label as usize { 1.0 } else { 0.0 };
            *dj = (pj - target) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;
    use crate::layers::gradcheck::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn naive_loss(z: &[f64], labels: &[u32], classes: usize) -> f64 {
        let batch = labels.len();
        let mut total = 0.0;
        for (row, &y) in z.chunks_exact(classes).zip(labels) {
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            let p = ((row[y as usize] - max).exp() / sum).clamp(1e-7, 1.0 - 1e-7);
            total -= p.ln();
        }
        total / batch as f64
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (batch, classes) = (6, 5);
        let mut rng = Rng::new(300);
        let z = random_vec(&mut rng, batch * classes, -3.0, 3.0);
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
        let mut probs = vec![0.0; z.len()];
        let (loss_sum, correct) = softmax_xent_forward(&mut probs, &z, &labels, classes);
        let z64 = to_f64(&z);
        let want = naive_loss(&z64, &labels, classes);
        assert!(((loss_sum / batch as f32) as f64 - want).abs() < 1e-5, "{loss_sum} vs {want}");
        let expected_correct =
            z.chunks(classes).zip(&labels).filter(|(row, &y)| row.iter().all(|&v| v <= row[y as usize])).count();
        assert_eq!(correct as usize, expected_correct);
        for row in probs.chunks(classes) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let mut dz = vec![f32::NAN; z.len()];
        softmax_xent_backward(&mut dz, &probs, &labels, classes, batch);
        let g = numeric_grad(&|z: &[f64]| naive_loss(z, &labels, classes), &z64, 1e-6);
        assert_close("softmax_xent dlogits", &dz, &g, 1e-6, 1e-4);
    }

    #[test]
    fn clipped_rows_give_the_clipped_loss_and_no_gradient() {
        // Row 0 is certain and right (p = 1), row 1 certain and wrong (p ~ e^-200).
        let z = [200.0, 0.0, 0.0, 200.0];
        let labels = [0, 0];
        let mut probs = [0.0; 4];
        let (loss_sum, correct) = softmax_xent_forward(&mut probs, &z, &labels, 2);
        let want = -(1.0f32 - 1e-7).ln() - 1e-7f32.ln();
        assert!((loss_sum - want).abs() < 1e-4, "{loss_sum} vs {want}");
        assert_eq!(correct, 1);
        let mut dz = [f32::NAN; 4];
        softmax_xent_backward(&mut dz, &probs, &labels, 2, 2);
        assert_eq!(dz, [0.0; 4]);
    }
}
