//! Single-precision GEMM for the layers, C = alpha * A @ B + beta * C on strided views, with
//! no heap allocation (packed blocks live on the stack): register-blocked AVX-512 / AVX2+FMA
//! microkernels picked at run time, a portable kernel elsewhere; matrixmultiply as the tests' oracle.
//! Leaves out: threading (callers split work) and the large-matrix tuning of a full BLAS.

use core::mem::MaybeUninit;

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
    #[cfg(test)]
    fn at(&self, row: usize, col: usize) -> f32 {
        self.data[row * self.row_stride + col * self.col_stride]
    }
}

/// c (m x n, row-major, rows `c_stride` apart) = alpha * a @ b + beta * c. With beta == 0, c
/// is overwritten (NaNs in it do not leak through). Single-threaded; allocates nothing.
/// Panics (an internal invariant, not input validation) if a view exceeds its slice.
pub fn gemm(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], c_stride: usize) {
    gemm_with(best_isa(), alpha, a, b, beta, c, c_stride);
}

/// Asserts that the views fit their slices; handles the empty cases. Returns whether there
/// is a product left to compute (m, n, k all non-zero).
fn check_views(a: &Mat<'_>, b: &Mat<'_>, beta: f32, c: &mut [f32], c_stride: usize) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm: inner dimensions differ");
    if m == 0 || n == 0 {
        return false;
    }
    assert!((m - 1) * c_stride + n <= c.len(), "gemm: output view exceeds its slice");
    if k == 0 {
        for row in c.chunks_mut(c_stride).take(m) {
            for v in &mut row[..n] {
                *v = if beta == 0.0 { 0.0 } else { *v * beta };
            }
        }
        return false;
    }
    assert!(a.last_index() < a.data.len() && b.last_index() < b.data.len(), "gemm: input view exceeds its slice");
    true
}

/// Which microkernel runs; the best one the CPU supports is detected once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn best_isa() -> Isa {
    use core::sync::atomic::{AtomicU8, Ordering};
    static CACHED: AtomicU8 = AtomicU8::new(0); // 0 = not detected yet
    match CACHED.load(Ordering::Relaxed) {
        1 => Isa::Portable,
        2 => Isa::Avx2,
        3 => Isa::Avx512,
        _ => {
            let (isa, code) = if std::is_x86_feature_detected!("avx512f") {
                (Isa::Avx512, 3)
            } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                (Isa::Avx2, 2)
            } else {
                (Isa::Portable, 1)
            };
            CACHED.store(code, Ordering::Relaxed);
            isa
        }
    }
}

/// Without std there is no run-time detection: use what the build targets.
#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn best_isa() -> Isa {
    if cfg!(target_feature = "avx512f") {
        Isa::Avx512
    } else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn best_isa() -> Isa {
    Isa::Portable
}

/// Whether this CPU runs AVX2 and FMA code (the other layers' SIMD paths ask too).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    matches!(best_isa(), Isa::Avx2 | Isa::Avx512)
}

/// Which kernel `gemm` runs on this CPU, for logs and benchmarks.
pub fn kernel_name() -> &'static str {
    match best_isa() {
        Isa::Portable => "portable 4x8",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => "AVX2+FMA 6x16",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => "AVX-512F 12x32",
    }
}

fn gemm_with(isa: Isa, alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], c_stride: usize) {
    if !check_views(&a, &b, beta, c, c_stride) {
        return;
    }
    match isa {
        Isa::Portable => blocked::<Portable<4, 8>>(alpha, a, b, beta, c, c_stride),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => blocked::<x86::Avx2>(alpha, a, b, beta, c, c_stride),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => blocked::<x86::Avx512>(alpha, a, b, beta, c, c_stride),
    }
}

/// A register-blocked kernel for a tile of up to MR x NR of C.
trait Microkernel {
    const MR: usize;
    const NR: usize;
    /// c[i][j] = alpha * sum_p a[i*rs_a + p*cs_a] * b[p*rs_b + j] + beta * c[i*rs_c + j] for
    /// i < rows (1..=MR), j < NR, p < kc; beta == 0 overwrites c without reading it. B is a
    /// packed panel (rs_b = NR) or NR columns of a row-major B read in place.
    ///
    /// # Safety
    /// Every index above must be inside the allocations behind `a`, `b` and `c`, and the
    /// running CPU must support the kernel's instructions.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        rows: usize,
        kc: usize,
        a: *const f32,
        rs_a: usize,
        cs_a: usize,
        b: *const f32,
        rs_b: usize,
        c: *mut f32,
        rs_c: usize,
        alpha: f32,
        beta: f32,
    );
}

/// Floats of stack for one packed block of B (kc x nc): 64 KB, which stays in L2.
/// With the stack copy of A (24 KB) the whole of `gemm` uses under 100 KB of stack.
const B_BLOCK: usize = 16 * 1024;
/// The longest stretch of k in one pass over C; longer k is cut into equal passes. An A
/// panel of 6 x 128 read in place (a transposed A: 128 lines) then fits in L1 beside the B
/// panels streaming past it; 256 measured no faster on the conv2 shapes, slower on dkernel.
const KC_MAX: usize = 128;
/// Rows of A prepared at once (a copy takes up to 24 KB). A multiple of every kernel's MR.
const MC: usize = 48;
/// The largest MR x NR of any kernel (edge tiles are computed into a stack copy).
const TILE_MAX: usize = 12 * 32;

/// The blocked loops around a microkernel. A block of B (kc x nc) is packed into NR-wide
/// panels that stay in L2; each MR-row panel of a block of A (MC x kc, read in place or
/// copied, see `prepare_a`) sits in L1 while it meets every B panel.
fn blocked<K: Microkernel>(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], c_stride: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let kc_max = k.div_ceil(k.div_ceil(KC_MAX));
    // At least 128 columns: all of the dense layer's n, so its A is prepared only once.
    let nc_max = (B_BLOCK / kc_max) / K::NR * K::NR;
    let mut b_buf = [MaybeUninit::<f32>::uninit(); B_BLOCK];
    // Read B in place when its panels are whole and either its rows are short (a panel's kc
    // rows then share few L1 sets: the Winograd products) or A is a single panel of rows, so
    // packing would copy all of B for one use (the dense layer for one image). Otherwise
    // pack: the dense layer's 512-byte rows thrash L1 when read in place by 64 rows of A.
    let b_in_place = b.col_stride == 1 && n.is_multiple_of(K::NR) && (b.row_stride <= 64 || m <= K::MR);
    let mut a_buf = [MaybeUninit::<f32>::uninit(); MC * KC_MAX];
    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            // Later passes over k add onto what the first one wrote.
            let beta = if pc == 0 { beta } else { 1.0 };
            let (b_panels, rs_b) = if b_in_place {
                (&b.data[pc * b.row_stride + jc..], b.row_stride)
            } else {
                (pack_b::<K>(&mut b_buf, &b, pc, kc, jc, nc), K::NR)
            };
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                let (a_block, rs_a, cs_a) = prepare_a(&mut a_buf, &a, ic, mc, pc, kc);
                for ir in (0..mc).step_by(K::MR) {
                    let rows = K::MR.min(mc - ir);
                    // Exactly the floats of the rows x kc panel the kernel reads.
                    let ap = a_block[ir * rs_a..][..(rows - 1) * rs_a + (kc - 1) * cs_a + 1].as_ptr();
                    for jr in (0..nc).step_by(K::NR) {
                        let cols = K::NR.min(nc - jr);
                        let bp = if b_in_place {
                            &b_panels[jr..][..(kc - 1) * rs_b + K::NR]
                        } else {
                            &b_panels[jr * kc..][..kc * K::NR]
                        }
                        .as_ptr();
                        let offset = (ic + ir) * c_stride + jc + jr;
                        if cols == K::NR {
                            // SAFETY: A and B are the slices the kernel reads (indexed above);
                            // the tile's C rows are < m and columns < n, inside c as
                            // `check_views` found; `blocked` only runs kernels the CPU has.
                            unsafe {
                                K::tile(
                                    rows,
                                    kc,
                                    ap,
                                    rs_a,
                                    cs_a,
                                    bp,
                                    rs_b,
                                    c.as_mut_ptr().add(offset),
                                    c_stride,
                                    alpha,
                                    beta,
                                )
                            };
                        } else {
                            // Past n: compute the whole width into a local tile, keep `cols`.
                            let mut tile = [0.0f32; TILE_MAX];
                            // SAFETY: as above for A and B; C is the local MR x NR tile.
                            unsafe { K::tile(rows, kc, ap, rs_a, cs_a, bp, rs_b, tile.as_mut_ptr(), K::NR, 1.0, 0.0) };
                            for (i, t) in tile.chunks_exact(K::NR).take(rows).enumerate() {
                                let dst = &mut c[offset + i * c_stride..][..cols];
                                for (d, &t) in dst.iter_mut().zip(t) {
                                    *d = if beta == 0.0 { alpha * t } else { alpha * t + beta * *d };
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Packs rows pc..pc+kc, columns jc..jc+nc of B as NR-wide panels, each kc x NR row-major,
/// zero-padded past column nc. Returns the packed floats.
fn pack_b<'p, K: Microkernel>(
    buf: &'p mut [MaybeUninit<f32>],
    b: &Mat<'_>,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
) -> &'p [f32] {
    let start = pc * b.row_stride + jc * b.col_stride;
    pack_panels(buf, K::NR, kc, nc, b.data, start, b.row_stride, b.col_stride)
}

/// Rows r0..r0+rows, columns pc..pc+kc of A for the kernel, with their row and column
/// strides (row i starts at i * row stride). Read in place when A's lines (rows, or the
/// columns of a transposed A) are contiguous and the stride between them is not a multiple
/// of 64 floats: such strides put a panel's kc lines into at most 16 of the 64 L1 sets
/// (dense's rows, 9216 floats apart, all into 4). Otherwise copied into a compact block
/// that keeps A's orientation, so each line is one plain copy (the whole block one copy when
/// A's lines are adjacent).
fn prepare_a<'p>(
    buf: &'p mut [MaybeUninit<f32>],
    a: &Mat<'p>,
    r0: usize,
    rows: usize,
    pc: usize,
    kc: usize,
) -> (&'p [f32], usize, usize) {
    let by_columns = a.row_stride == 1 && a.col_stride != 1;
    // (lines, floats per line, A's stride between lines and within one; copied strides)
    let (lines, line_len, between, within, strides) = if by_columns {
        (kc, rows, a.col_stride, 1, (1, rows))
    } else {
        (rows, kc, a.row_stride, a.col_stride, (kc, 1))
    };
    let start = r0 * a.row_stride + pc * a.col_stride;
    if within == 1 && !between.is_multiple_of(64) {
        return (&a.data[start..], a.row_stride, a.col_stride);
    }
    let dst = &mut buf[..lines * line_len];
    if within == 1 && between == line_len {
        write(dst, &a.data[start..][..lines * line_len]);
    } else {
        for (l, line) in dst.chunks_exact_mut(line_len).enumerate() {
            if within == 1 {
                write(line, &a.data[start + l * between..][..line_len]);
            } else {
                for (x, d) in line.iter_mut().enumerate() {
                    d.write(a.data[start + l * between + x * within]);
                }
            }
        }
    }
    // SAFETY: every line of `dst` was written (or all of it in one copy).
    (unsafe { assume_init(dst) }, strides.0, strides.1)
}

/// Packs `kc` lines of `len` values (value x of line p at data[start + p*line + x*step]) as
/// `width`-wide panels, each kc x width row-major, zero-padded past `len`. Returns them.
#[allow(clippy::too_many_arguments)]
#[inline(always)] // so that `width` is a constant in the copies
fn pack_panels<'p>(
    buf: &'p mut [MaybeUninit<f32>],
    width: usize,
    kc: usize,
    len: usize,
    data: &[f32],
    start: usize,
    line: usize,
    step: usize,
) -> &'p [f32] {
    assert!(width.is_multiple_of(4), "kernels are a whole number of 4-float groups wide");
    let panels = len.div_ceil(width);
    let dst = &mut buf[..panels * kc * width];
    if step == 1 {
        // Lines are contiguous: copy each one, cut into panel rows, in one go.
        for p in 0..kc {
            let src = &data[start + p * line..][..len];
            for (panel, part) in src.chunks(width).enumerate() {
                let row = &mut dst[(panel * kc + p) * width..][..width];
                if part.len() == width {
                    write(row, &part[..width]); // fixed length once inlined: no memcpy call
                } else {
                    let (out, pad) = row.split_at_mut(part.len());
                    write(out, part);
                    pad.fill(MaybeUninit::new(0.0));
                }
            }
        }
    } else {
        // Values within a line are apart. Go four values (columns of the panel) at a time,
        // writing four floats per row, zeros past `len`; a transposed B (line == 1) has each
        // column contiguous, so those four are plain slices.
        for (panel, block) in dst.chunks_exact_mut(kc * width).enumerate() {
            for x0 in (0..width).step_by(4) {
                let first = panel * width + x0;
                if line == 1 && first + 4 <= len {
                    let columns: [&[f32]; 4] = core::array::from_fn(|x| &data[start + (first + x) * step..][..kc]);
                    for (p, row) in block.chunks_exact_mut(width).enumerate() {
                        write(&mut row[x0..x0 + 4], &columns.map(|column| column[p]));
                    }
                } else {
                    for (p, row) in block.chunks_exact_mut(width).enumerate() {
                        let at =
                            |x: usize| if first + x < len { data[start + p * line + (first + x) * step] } else { 0.0 };
                        write(&mut row[x0..x0 + 4], &core::array::from_fn::<f32, 4, _>(at));
                    }
                }
            }
        }
    }
    // SAFETY: every element of `dst` was written: with contiguous lines, each (p, panel)
    // row of `width` floats (the chunks of a line cover all `panels`); otherwise floats
    // x0..x0+4 of every row of every panel, for x0 = 0, 4, .. below width (a multiple of 4).
    unsafe { assume_init(dst) }
}

/// Copies `src` into the equally long `dst` (a memcpy, inlined when the length is fixed).
/// (`write_copy_of_slice` would be the safe spelling, but needs Rust 1.93.)
#[inline(always)]
fn write(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: both slices hold `src.len()` floats and cannot overlap (one is borrowed
    // mutably); MaybeUninit<f32> has f32's layout.
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<f32>(), src.len()) };
}

/// # Safety
/// Every element of `values` must have been written.
unsafe fn assume_init(values: &[MaybeUninit<f32>]) -> &[f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the caller vouches every value is set.
    unsafe { core::slice::from_raw_parts(values.as_ptr().cast::<f32>(), values.len()) }
}

/// Plain Rust, left to the compiler's autovectoriser: for targets without the x86 kernels
/// (as 4 x 8), and in tests, shaped like an x86 kernel, to check the blocking around it.
struct Portable<const MR: usize, const NR: usize>;

impl<const MR: usize, const NR: usize> Microkernel for Portable<MR, NR> {
    const MR: usize = MR;
    const NR: usize = NR;
    unsafe fn tile(
        rows: usize,
        kc: usize,
        a: *const f32,
        rs_a: usize,
        cs_a: usize,
        b: *const f32,
        rs_b: usize,
        c: *mut f32,
        rs_c: usize,
        alpha: f32,
        beta: f32,
    ) {
        let mut acc = [[0.0f32; NR]; MR];
        for p in 0..kc {
            // SAFETY: the caller keeps these indices inside `a` and `b` (see the trait).
            let bp = unsafe { &*b.add(p * rs_b).cast::<[f32; NR]>() };
            for (i, row) in acc.iter_mut().enumerate().take(rows) {
                // SAFETY: as above.
                let ai = unsafe { *a.add(i * rs_a + p * cs_a) };
                for (r, &bv) in row.iter_mut().zip(bp) {
                    *r += ai * bv;
                }
            }
        }
        for (i, row) in acc.iter().enumerate().take(rows) {
            // SAFETY: the caller keeps `rows` rows of NR floats, rs_c apart, inside `c`.
            let dst = unsafe { &mut *c.add(i * rs_c).cast::<[f32; NR]>() };
            for (d, &r) in dst.iter_mut().zip(row) {
                *d = if beta == 0.0 { alpha * r } else { alpha * r + beta * *d };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86-64 kernels: each broadcasts one value of A per row and FMAs it with a row of
    //! the packed B panel held in two vector registers, keeping the whole tile in registers.
    //! The row count is a const parameter, so a short tile (m not a multiple of MR) still
    //! runs in registers, without computing rows that would be thrown away.
    use super::Microkernel;
    use core::arch::x86_64::*;

    /// Calls `$kernel::<R>(args)` for R = `$rows`, one of the listed counts.
    macro_rules! with_rows {
        ($rows:expr, $kernel:ident, $args:tt, $($r:literal)*) => {
            match $rows {
                $($r => $kernel::<$r> $args,)*
                _ => unreachable!("a tile has 1..=MR rows"),
            }
        };
    }

    /// 6 x 16 with AVX2+FMA: 12 ymm accumulators, 2 for B, 1 broadcast (of 16 registers).
    pub struct Avx2;

    impl Microkernel for Avx2 {
        const MR: usize = 6;
        const NR: usize = 16;
        unsafe fn tile(
            rows: usize,
            kc: usize,
            a: *const f32,
            rs_a: usize,
            cs_a: usize,
            b: *const f32,
            rs_b: usize,
            c: *mut f32,
            rs_c: usize,
            alpha: f32,
            beta: f32,
        ) {
            // SAFETY: the caller upholds the trait's contract, including AVX2+FMA support.
            unsafe { with_rows!(rows, avx2_x16, (kc, a, rs_a, cs_a, b, rs_b, c, rs_c, alpha, beta), 1 2 3 4 5 6) }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn avx2_x16<const R: usize>(
        kc: usize,
        a: *const f32,
        rs_a: usize,
        cs_a: usize,
        b: *const f32,
        rs_b: usize,
        c: *mut f32,
        rs_c: usize,
        alpha: f32,
        beta: f32,
    ) {
        // SAFETY: every pointer offset stays within the ranges the trait's contract names.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            let (mut a, mut b) = (a, b);
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_ss(&*a.add(i * rs_a));
                    row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                }
                a = a.add(cs_a);
                b = b.add(rs_b);
            }
            let alpha = _mm256_set1_ps(alpha);
            let beta_v = _mm256_set1_ps(beta);
            for (i, row) in acc.iter().enumerate() {
                for (h, &r) in row.iter().enumerate() {
                    let p = c.add(i * rs_c + 8 * h);
                    let v = _mm256_mul_ps(alpha, r);
                    let v = if beta == 0.0 { v } else { _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(p), v) };
                    _mm256_storeu_ps(p, v);
                }
            }
        }
    }

    /// 12 x 32 with AVX-512F: 24 zmm accumulators, 2 for B, 1 broadcast (of 32 registers).
    pub struct Avx512;

    impl Microkernel for Avx512 {
        const MR: usize = 12;
        const NR: usize = 32;
        unsafe fn tile(
            rows: usize,
            kc: usize,
            a: *const f32,
            rs_a: usize,
            cs_a: usize,
            b: *const f32,
            rs_b: usize,
            c: *mut f32,
            rs_c: usize,
            alpha: f32,
            beta: f32,
        ) {
            // SAFETY: the caller upholds the trait's contract, including AVX-512F support.
            unsafe {
                with_rows!(rows, avx512_x32, (kc, a, rs_a, cs_a, b, rs_b, c, rs_c, alpha, beta), 1 2 3 4 5 6 7 8 9 10 11 12)
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn avx512_x32<const R: usize>(
        kc: usize,
        a: *const f32,
        rs_a: usize,
        cs_a: usize,
        b: *const f32,
        rs_b: usize,
        c: *mut f32,
        rs_c: usize,
        alpha: f32,
        beta: f32,
    ) {
        // SAFETY: every pointer offset stays within the ranges the trait's contract names.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            let (mut a, mut b) = (a, b);
            for _ in 0..kc {
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(16));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i * rs_a));
                    row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                }
                a = a.add(cs_a);
                b = b.add(rs_b);
            }
            let alpha = _mm512_set1_ps(alpha);
            let beta_v = _mm512_set1_ps(beta);
            for (i, row) in acc.iter().enumerate() {
                for (h, &r) in row.iter().enumerate() {
                    let p = c.add(i * rs_c + 16 * h);
                    let v = _mm512_mul_ps(alpha, r);
                    let v = if beta == 0.0 { v } else { _mm512_fmadd_ps(beta_v, _mm512_loadu_ps(p), v) };
                    _mm512_storeu_ps(p, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    type Gemm = fn(f32, Mat<'_>, Mat<'_>, f32, &mut [f32], usize);

    /// The same product through matrixmultiply's sgemm (a dev-dependency): the oracle.
    fn gemm_reference(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], c_stride: usize) {
        if !check_views(&a, &b, beta, c, c_stride) {
            return;
        }
        // SAFETY: `check_views` keeps every element the strides can reach inside the three
        // slices; `c` is borrowed mutably so it cannot alias `a` or `b`.
        unsafe {
            matrixmultiply::sgemm(
                a.rows,
                a.cols,
                b.cols,
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

    /// The blocking shaped like the x86 kernels, around the portable kernel: checks the
    /// loops for AVX-512's 12 x 32 even on a CPU without AVX-512.
    fn portable_like<const MR: usize, const NR: usize>(
        alpha: f32,
        a: Mat<'_>,
        b: Mat<'_>,
        beta: f32,
        c: &mut [f32],
        c_stride: usize,
    ) {
        if check_views(&a, &b, beta, c, c_stride) {
            blocked::<Portable<MR, NR>>(alpha, a, b, beta, c, c_stride);
        }
    }

    /// Every kernel this CPU can run (each is checked, not just the one `gemm` picks) and
    /// the portable kernel in the x86 kernels' shapes.
    fn kernels() -> Vec<(&'static str, Gemm)> {
        let mut kernels: Vec<(&'static str, Gemm)> =
            vec![("portable 4x8", |alpha, a, b, beta, c, s| gemm_with(Isa::Portable, alpha, a, b, beta, c, s))];
        kernels.push(("portable 6x16", portable_like::<6, 16>));
        kernels.push(("portable 12x32", portable_like::<12, 32>));
        #[cfg(all(target_arch = "x86_64", feature = "std"))]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                kernels.push(("AVX2", |alpha, a, b, beta, c, s| gemm_with(Isa::Avx2, alpha, a, b, beta, c, s)));
            }
            if std::is_x86_feature_detected!("avx512f") {
                kernels.push(("AVX-512", |alpha, a, b, beta, c, s| gemm_with(Isa::Avx512, alpha, a, b, beta, c, s)));
            }
        }
        kernels
    }

    /// One product to check: shapes, whether A and B are transposed views of row-major
    /// storage, padding added to each stored row, and the coefficients.
    #[derive(Clone, Copy, Debug)]
    struct Case {
        m: usize,
        k: usize,
        n: usize,
        a_transposed: bool,
        b_transposed: bool,
        pad: usize,
        alpha: f32,
        beta: f32,
    }

    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
    }

    /// A (rows x cols) view over fresh random storage, row-major or transposed, with each
    /// stored row `pad` floats longer than needed.
    fn view(rng: &mut Rng, rows: usize, cols: usize, transposed: bool, pad: usize) -> (Vec<f32>, usize) {
        let (stored_rows, stored_cols) = if transposed { (cols, rows) } else { (rows, cols) };
        let stride = stored_cols + pad;
        (random(rng, stored_rows * stride), stride)
    }

    fn mat(data: &[f32], rows: usize, cols: usize, transposed: bool, stride: usize) -> Mat<'_> {
        if transposed {
            Mat::transposed(data, cols, rows, stride)
        } else {
            Mat::rows(data, rows, cols, stride)
        }
    }

    /// Runs `case` through every kernel and through matrixmultiply, and compares each with
    /// an f64 triple loop. The tolerance scales with the sum of the magnitudes of the terms
    /// (so with k): |got - want| <= 1e-5 * (1 + alpha * sum_p |a b| + |beta c|).
    fn check(case: Case, seed: u64, nan_c: bool) {
        let Case { m, k, n, a_transposed, b_transposed, pad, alpha, beta } = case;
        let mut rng = Rng::new(seed);
        let (a_data, a_stride) = view(&mut rng, m, k, a_transposed, pad);
        let (b_data, b_stride) = view(&mut rng, k, n, b_transposed, pad);
        let a = mat(&a_data, m, k, a_transposed, a_stride);
        let b = mat(&b_data, k, n, b_transposed, b_stride);
        let c_stride = n + pad;
        let mut c0 = random(&mut rng, m * c_stride);
        if nan_c {
            c0.fill(f32::NAN);
        }
        let mut want = vec![0.0f64; m * n];
        let mut bound = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let (mut sum, mut abs) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let t = a.at(i, p) as f64 * b.at(p, j) as f64;
                    sum += t;
                    abs += t.abs();
                }
                let c = if beta == 0.0 { 0.0 } else { beta as f64 * c0[i * c_stride + j] as f64 };
                want[i * n + j] = alpha as f64 * sum + c;
                bound[i * n + j] = 1e-5 * (1.0 + (alpha as f64).abs() * abs + c.abs());
            }
        }
        let mut runs: Vec<(&str, Vec<f32>)> = Vec::new();
        for (name, kernel) in kernels() {
            let mut c = c0.clone();
            kernel(alpha, a, b, beta, &mut c, c_stride);
            runs.push((name, c));
        }
        let mut c = c0.clone();
        gemm_reference(alpha, a, b, beta, &mut c, c_stride);
        runs.push(("matrixmultiply", c));
        for (name, c) in &runs {
            for i in 0..m {
                for j in 0..c_stride {
                    let got = c[i * c_stride + j];
                    if j >= n {
                        // Padding past column n is not part of C and must be left alone.
                        assert!(
                            got.to_bits() == c0[i * c_stride + j].to_bits(),
                            "{name} {case:?}: wrote padding ({i}, {j})"
                        );
                        continue;
                    }
                    let (w, tol) = (want[i * n + j], bound[i * n + j]);
                    assert!(
                        (got as f64 - w).abs() <= tol,
                        "{name} {case:?} seed {seed}: c[{i}][{j}] = {got}, want {w} (tolerance {tol})"
                    );
                }
            }
        }
    }

    fn plain(m: usize, k: usize, n: usize, a_transposed: bool, b_transposed: bool) -> Case {
        Case { m, k, n, a_transposed, b_transposed, pad: 0, alpha: 1.0, beta: 1.0 }
    }

    #[test]
    fn the_model_shapes_match() {
        let cases = [
            plain(576, 288, 64, false, false),  // conv2 forward, per sample
            plain(288, 576, 64, true, false),   // conv2 dkernel = col^T @ dout
            plain(576, 64, 288, false, true),   // conv2 dcol = dout @ kernel^T
            plain(676, 9, 32, false, false),    // conv1 forward
            plain(9, 676, 32, true, false),     // conv1 dkernel
            plain(64, 9216, 128, false, false), // dense forward, half a batch of 128
            plain(64, 128, 9216, false, true),  // dense dinp = dout @ kernel^T
            plain(1, 9216, 128, false, false),  // dense forward of one image: B read in place
            plain(36, 32, 64, false, false),    // Winograd forward per point: B read in place
            plain(32, 36, 64, true, false),     // Winograd dU = V^T @ dM: B read in place
            plain(36, 64, 32, false, true),     // Winograd dV = dM @ U^T
        ];
        for (seed, case) in cases.into_iter().enumerate() {
            check(case, seed as u64, false);
        }
        // dense dkernel rows = inp^T @ dout: A is a column block of the (128, 9216) input.
        let mut rng = Rng::new(7);
        let (inp, dout) = (random(&mut rng, 128 * 9216), random(&mut rng, 128 * 128));
        let a = Mat::transposed(&inp[4608..], 128, 4608, 9216);
        let b = Mat::rows(&dout, 128, 128, 128);
        let mut got = vec![f32::NAN; 4608 * 128];
        let mut want = got.clone();
        gemm(1.0, a, b, 0.0, &mut got, 128);
        gemm_reference(1.0, a, b, 0.0, &mut want, 128);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()) * 128.0, "{g} vs {w}");
        }
    }

    #[test]
    fn edge_sizes_transposes_and_coefficients_match() {
        let mut rng = Rng::new(42);
        let pick = |rng: &mut Rng| 1 + rng.below(70) as usize;
        for seed in 0..300u64 {
            let case = Case {
                m: pick(&mut rng),
                k: pick(&mut rng),
                n: pick(&mut rng),
                a_transposed: rng.below(2) == 0,
                b_transposed: rng.below(2) == 0,
                pad: [0, 1, 3][seed as usize % 3],
                alpha: [1.0, -0.5, 2.0][seed as usize / 3 % 3],
                beta: [0.0, 1.0, 0.3][seed as usize / 9 % 3],
            };
            check(case, seed, false);
        }
        // Every small size of each dimension, with the others at awkward sizes.
        for s in 1..=70 {
            check(
                Case { m: s, k: 13, n: 17, a_transposed: false, b_transposed: false, pad: 1, alpha: 1.0, beta: 1.0 },
                s as u64,
                false,
            );
            check(
                Case { m: 13, k: s, n: 19, a_transposed: true, b_transposed: false, pad: 0, alpha: 1.0, beta: 0.0 },
                s as u64,
                false,
            );
            check(
                Case { m: 7, k: 11, n: s, a_transposed: false, b_transposed: true, pad: 2, alpha: -1.0, beta: 0.5 },
                s as u64,
                false,
            );
        }
    }

    #[test]
    fn long_k_and_wide_n_cross_block_boundaries() {
        // k past KC_MAX (several passes accumulating into C) and n past one packed B block.
        for (seed, (m, k, n)) in [(13, 257, 33), (7, 600, 20), (25, 64, 300), (5, 513, 257)].into_iter().enumerate() {
            for beta in [0.0, 1.0, -0.25] {
                let case =
                    Case { m, k, n, a_transposed: seed % 2 == 1, b_transposed: seed >= 2, pad: 1, alpha: 0.5, beta };
                check(case, seed as u64, false);
            }
        }
    }

    #[test]
    fn beta_zero_overwrites_nan() {
        for (seed, (m, k, n)) in [(1, 1, 1), (6, 16, 16), (13, 300, 33), (576, 64, 288)].into_iter().enumerate() {
            check(
                Case { m, k, n, a_transposed: false, b_transposed: seed % 2 == 1, pad: 2, alpha: 1.0, beta: 0.0 },
                seed as u64,
                true,
            );
        }
        // k = 0: C = beta * C, which for beta = 0 is zero even over NaN.
        let mut c = vec![f32::NAN; 6];
        gemm(1.0, Mat::rows(&[], 2, 0, 0), Mat::rows(&[], 0, 3, 3), 0.0, &mut c, 3);
        assert_eq!(c, [0.0; 6]);
    }

    #[test]
    fn gemm_is_deterministic() {
        let mut rng = Rng::new(3);
        let (a, b) = (random(&mut rng, 100 * 300), random(&mut rng, 300 * 70));
        let run = || {
            let mut c = vec![0.0; 100 * 70];
            gemm(1.0, Mat::rows(&a, 100, 300, 300), Mat::rows(&b, 300, 70, 70), 0.0, &mut c, 70);
            c
        };
        assert_eq!(run(), run());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn any_shape_and_strides_match(
            m in 1usize..80, k in 1usize..300, n in 1usize..80,
            a_transposed: bool, b_transposed: bool, pad in 0usize..4,
            alpha in prop::sample::select(vec![1.0f32, -0.5, 2.0]),
            beta in prop::sample::select(vec![0.0f32, 1.0, 0.3]),
            nan_c: bool, seed: u64,
        ) {
            let beta = if nan_c { 0.0 } else { beta };
            check(Case { m, k, n, a_transposed, b_transposed, pad, alpha, beta }, seed, nan_c);
        }
    }
}
