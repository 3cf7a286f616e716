//! Row-major GEMMs on cuBLAS, which is column-major: a row-major X is the column-major X^T, so
//! C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T by swapping the operands. The mapping
//! is a pure function, tested here against a naive column-major GEMM (no GPU needed).
//! Leaves out: batched and mixed-precision GEMMs.

use cudarc::cublas::sys::cublasOperation_t;

/// C (m x n, rows `ldc` apart) = alpha op(A) op(B) + beta C, every matrix row-major.
/// op(A) is m x k: A is stored m x k (`lda` >= k), or k x m when `transpose_a` (`lda` >= m).
/// op(B) is k x n: B is stored k x n (`ldb` >= n), or n x k when `transpose_b` (`ldb` >= k).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowMajorGemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// The same product in cuBLAS's column-major arguments; cuBLAS's first operand is our B and
/// its second our A.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnMajorGemm {
    pub transa: cublasOperation_t,
    pub transb: cublasOperation_t,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub lda: i32,
    pub ldb: i32,
    pub ldc: i32,
}

fn op(transpose: bool) -> cublasOperation_t {
    if transpose {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

impl RowMajorGemm {
    /// C^T (n x m) = op(B)^T (n x k) op(A)^T (k x m): cuBLAS's A is our B, its B our A.
    /// None when a size does not fit cuBLAS's 32-bit ints.
    pub fn to_column_major(&self) -> Option<ColumnMajorGemm> {
        let int = |v: usize| i32::try_from(v).ok();
        Some(ColumnMajorGemm {
            transa: op(self.transpose_b),
            transb: op(self.transpose_a),
            m: int(self.n)?,
            n: int(self.m)?,
            k: int(self.k)?,
            lda: int(self.ldb)?,
            ldb: int(self.lda)?,
            ldc: int(self.ldc)?,
        })
    }

    /// The number of values each operand must hold (for bounds checks before a launch).
    pub fn extents(&self) -> (usize, usize, usize) {
        let rows_cols = |rows: usize, ld: usize, cols: usize| if rows == 0 { 0 } else { (rows - 1) * ld + cols };
        let a =
            if self.transpose_a { rows_cols(self.k, self.lda, self.m) } else { rows_cols(self.m, self.lda, self.k) };
        let b =
            if self.transpose_b { rows_cols(self.n, self.ldb, self.k) } else { rows_cols(self.k, self.ldb, self.n) };
        (a, b, rows_cols(self.m, self.ldc, self.n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cuBLAS's sgemm semantics, naively: column-major, element (i, j) at i + j * ld.
    fn column_major_sgemm(g: &ColumnMajorGemm, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
        let at = |i: usize, p: usize| match g.transa {
            cublasOperation_t::CUBLAS_OP_N => a[i + p * g.lda as usize],
            _ => a[p + i * g.lda as usize],
        };
        let bt = |p: usize, j: usize| match g.transb {
            cublasOperation_t::CUBLAS_OP_N => b[p + j * g.ldb as usize],
            _ => b[j + p * g.ldb as usize],
        };
        for i in 0..g.m as usize {
            for j in 0..g.n as usize {
                let sum: f32 = (0..g.k as usize).map(|p| at(i, p) * bt(p, j)).sum();
                let cij = &mut c[i + j * g.ldc as usize];
                *cij = alpha * sum + beta * *cij;
            }
        }
    }

    #[test]
    fn row_major_products_through_the_column_major_mapping() {
        let (m, n, k) = (3, 5, 4);
        for (transpose_a, transpose_b) in [(false, false), (true, false), (false, true), (true, true)] {
            // Padded leading dimensions catch a swapped lda/ldb.
            let lda = if transpose_a { m + 1 } else { k + 2 };
            let ldb = if transpose_b { k + 3 } else { n + 1 };
            let ldc = n + 2;
            let g = RowMajorGemm { m, n, k, transpose_a, transpose_b, lda, ldb, ldc, alpha: 1.5, beta: 0.5 };
            let (a_len, b_len, c_len) = g.extents();
            let a: Vec<f32> = (0..a_len).map(|i| (i as f32 * 0.7).sin()).collect();
            let b: Vec<f32> = (0..b_len).map(|i| (i as f32 * 0.3).cos()).collect();
            let c0: Vec<f32> = (0..c_len).map(|i| i as f32 * 0.01).collect();
            let op_a = |i: usize, p: usize| if transpose_a { a[p * lda + i] } else { a[i * lda + p] };
            let op_b = |p: usize, j: usize| if transpose_b { b[j * ldb + p] } else { b[p * ldb + j] };
            let mut want = c0.clone();
            for i in 0..m {
                for j in 0..n {
                    let sum: f32 = (0..k).map(|p| op_a(i, p) * op_b(p, j)).sum();
                    want[i * ldc + j] = 1.5 * sum + 0.5 * c0[i * ldc + j];
                }
            }
            let cm = g.to_column_major().unwrap();
            let mut got = c0.clone();
            // cuBLAS's first operand is our B.
            column_major_sgemm(&cm, 1.5, &b, &a, 0.5, &mut got);
            for (idx, (x, y)) in got.iter().zip(&want).enumerate() {
                assert!((x - y).abs() < 1e-5, "ta={transpose_a} tb={transpose_b} at {idx}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn sizes_beyond_i32_are_refused() {
        let g = RowMajorGemm {
            m: 1 << 31,
            n: 1,
            k: 1,
            transpose_a: false,
            transpose_b: false,
            lda: 1,
            ldb: 1,
            ldc: 1,
            alpha: 1.0,
            beta: 0.0,
        };
        assert!(g.to_column_major().is_none());
    }
}
