//! A checked, safe wrapper over matrixmultiply's sgemm for row-major and transposed views.
//! Leaves out: threading (callers split work); matrixmultiply picks AVX-512/AVX2/FMA itself.

/// A read-only matrix view: `rows x cols` with explicit strides into `data`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix whose rows are `row_stride` apart (>= cols).
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Mat { data, rows, cols, row_stride, col_stride: 1 }
    }
    /// The transpose of a row-major `rows x cols` matrix, viewed as `cols x rows`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Mat { data, rows: cols, cols: rows, row_stride: 1, col_stride: row_stride }
    }
    fn last_index(&self) -> usize {
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
    }
}

/// c (m x n, row-major, rows `c_stride` apart) = alpha * a @ b + beta * c.
/// Panics (an internal invariant, not input validation) if a view exceeds its slice.
pub fn gemm(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], c_stride: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm: inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * c_stride + n <= c.len(), "gemm: output view exceeds its slice");
    if k == 0 {
        for row in c.chunks_mut(c_stride).take(m) {
            for v in &mut row[..n] {
                *v *= beta;
            }
        }
        return;
    }
    assert!(a.last_index() < a.data.len() && b.last_index() < b.data.len(), "gemm: input view exceeds its slice");
    // SAFETY: the asserts above keep every element the strides can reach inside the three
    // slices; `c` is borrowed mutably so it cannot alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.as_mut_ptr(),
            c_stride as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_naive_with_transposes() {
        let (m, k, n) = (5, 7, 3);
        let a: alloc::vec::Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let bt: alloc::vec::Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect(); // (n, k)
        let mut c = alloc::vec![1.0f32; m * n];
        gemm(2.0, Mat::rows(&a, m, k, k), Mat::transposed(&bt, n, k, k), 0.5, &mut c, n);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 0.5 + 2.0 * (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
    }
}
