//! Development aid: single-threaded GFLOP/s of `gemm` against matrixmultiply (`gemm_reference`)
//! on the model's GEMM shapes. The two alternate within each repetition so background load
//! hits both alike; GFLOP/s per second of this thread's CPU time, medians of the repetitions. Usage: gemm_speed [reps [shape name part]].
use mnist_core::layers::gemm::{gemm, kernel_name, Mat};

type Gemm = fn(f32, Mat<'_>, Mat<'_>, f32, &mut [f32], usize);

/// The same product through matrixmultiply's sgemm (a dev-dependency of mnist-core).
fn gemm_reference(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], c_stride: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let last = |v: &Mat<'_>| (v.rows - 1) * v.row_stride + (v.cols - 1) * v.col_stride;
    assert!(k == b.rows && m > 0 && k > 0 && n > 0, "gemm_reference: shapes");
    assert!(last(&a) < a.data.len() && last(&b) < b.data.len() && (m - 1) * c_stride + n <= c.len());
    // SAFETY: the asserts keep every element the strides reach inside the three slices; `c`
    // is borrowed mutably so it cannot alias `a` or `b`.
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

/// Stored row-major storage for one operand and how it is viewed.
struct Operand {
    data: Vec<f32>,
    stored_rows: usize,
    stored_cols: usize,
    first_col: usize,
    transposed: bool,
}

impl Operand {
    fn new(stored_rows: usize, stored_cols: usize, transposed: bool) -> Self {
        let data = (0..stored_rows * stored_cols).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        Operand { data, stored_rows, stored_cols, first_col: 0, transposed }
    }
    /// A view of `cols` stored columns from first_col on (the dense kernel gradient's row
    /// split), transposed if asked.
    fn view(&self, cols: usize) -> Mat<'_> {
        let data = &self.data[self.first_col..];
        if self.transposed {
            Mat::transposed(data, self.stored_rows, cols, self.stored_cols)
        } else {
            Mat::rows(data, self.stored_rows, cols, self.stored_cols)
        }
    }
}

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_seconds;

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::args().nth(1).map_or(15, |s| s.parse().unwrap());
    let only = std::env::args().nth(2).unwrap_or_default(); // run only shapes whose name has this
                                                            // name, A storage, stored columns of A used, B storage, stored columns of B used, beta
    let mut dense_inp = Operand::new(128, 9216, true);
    dense_inp.first_col = 4608;
    let cases: Vec<(&str, Operand, usize, Operand, usize, f32)> = vec![
        ("conv2 fwd   576x288 @ 288x64", Operand::new(576, 288, false), 288, Operand::new(288, 64, false), 64, 1.0),
        ("conv2 dker  (576x288)^T @ 576x64", Operand::new(576, 288, true), 288, Operand::new(576, 64, false), 64, 1.0),
        ("conv2 dcol  576x64 @ (288x64)^T", Operand::new(576, 64, false), 64, Operand::new(288, 64, true), 64, 0.0),
        ("conv1 fwd   676x9 @ 9x32", Operand::new(676, 9, false), 9, Operand::new(9, 32, false), 32, 1.0),
        ("conv1 dker  (676x9)^T @ 676x32", Operand::new(676, 9, true), 9, Operand::new(676, 32, false), 32, 1.0),
        ("wino fwd    36x32 @ 32x64", Operand::new(36, 32, false), 32, Operand::new(32, 64, false), 64, 0.0),
        ("wino fwd x8 288x32 @ 32x64", Operand::new(288, 32, false), 32, Operand::new(32, 64, false), 64, 0.0),
        ("wino dU     (36x32)^T @ 36x64", Operand::new(36, 32, true), 32, Operand::new(36, 64, false), 64, 1.0),
        ("wino dV     36x64 @ (32x64)^T", Operand::new(36, 64, false), 64, Operand::new(32, 64, true), 64, 0.0),
        (
            "dense fwd   64x9216 @ 9216x128",
            Operand::new(64, 9216, false),
            9216,
            Operand::new(9216, 128, false),
            128,
            1.0,
        ),
        (
            "dense dinp  64x128 @ (9216x128)^T",
            Operand::new(64, 128, false),
            128,
            Operand::new(9216, 128, true),
            128,
            0.0,
        ),
        ("dense dker  (128x9216)^T @ 128x128", dense_inp, 4608, Operand::new(128, 128, false), 128, 0.0),
    ];
    println!("GFLOP/s, median and best of {reps}; mm = matrixmultiply, ours = {}", kernel_name());
    println!(
        "{:36} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6}",
        "shape (m x k @ k x n)", "mm", "ours", "ratio", "mm best", "ours", "ratio"
    );
    for (name, a_store, a_cols, b_store, b_cols, beta) in cases.iter().filter(|c| c.0.contains(&only)) {
        let a = a_store.view(*a_cols);
        let b = b_store.view(*b_cols);
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let flops = 2.0 * (m * k * n) as f64;
        let mut c = vec![0.0f32; m * n];
        // Enough calls per timing for ~5 ms of work at 50 GFLOP/s.
        let calls = ((5e-3 * 50e9 / flops) as usize).max(1);
        let time = |f: Gemm, c: &mut [f32]| {
            let start = cpu_seconds();
            for _ in 0..calls {
                f(1.0, a, b, *beta, c, n);
            }
            flops * calls as f64 / (cpu_seconds() - start) / 1e9
        };
        time(gemm_reference, &mut c);
        time(gemm, &mut c);
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            old.push(time(gemm_reference, &mut c));
            new.push(time(gemm, &mut c));
        }
        let (old_best, new_best) = (best(&old), best(&new));
        let (old, new) = (median(old), median(new));
        println!(
            "{name:36} {old:8.1} {new:8.1} {:6.2} {old_best:8.1} {new_best:8.1} {:6.2}",
            new / old,
            new_best / old_best
        );
    }
}
