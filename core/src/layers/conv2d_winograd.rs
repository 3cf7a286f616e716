//! 3x3 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016): the same
//! result as conv2d.rs's im2col path, to rounding, with 36 instead of 144 multiplies per 4x4
//! output tile and channel pair. The backward is the exact adjoint of the forward's transforms.
//! Leaves out: other kernel sizes and channel counts that are not multiples of 8 (conv2d.rs).
//!
//! Per sample: the input's 6x6 tiles (overlapping by 2) are transformed to V = B^T d B, the
//! kernel once per batch to U = G g G^T; then for each of the 36 transform points one sgemm
//! M = V (tiles x C) @ U (C x OC); the output tiles are Y = A^T M A. Layouts:
//! V (36, T, C), U (36, C, OC), M (36, T, OC), with T tiles in row-major tile order.

use crate::layers::gemm::{gemm, Mat};
use crate::layers::relu::relu_backward;
use crate::shape::Conv2dDims;

/// Output pixels per tile side, and input pixels per tile side.
const TILE: usize = 4;
const ALPHA: usize = TILE + 2;
/// Transform points per tile: one sgemm each.
pub const POINTS: usize = ALPHA * ALPHA;
/// Channels handled together: one AVX2 register.
const LANES: usize = 8;
type Lanes = [f32; LANES];
const ZERO: Lanes = [0.0; LANES];

// Interpolation points 0, -1, 1, -1/2, 1/2 and infinity, scaled so B^T is all small integers.
// B^T, A^T and their transposes are applied through the written-out `bt`, `at`, `b` and `a`
// below; the tests check those against these matrices.
#[cfg_attr(not(test), allow(dead_code))]
const BT: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
const G: [[f32; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];
#[cfg_attr(not(test), allow(dead_code))]
const AT: [[f32; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];
#[cfg_attr(not(test), allow(dead_code))]
const B: [[f32; 6]; 6] = transpose(&BT);
const GT: [[f32; 6]; 3] = transpose(&G);
#[cfg_attr(not(test), allow(dead_code))]
const A: [[f32; 4]; 6] = transpose(&AT);

const fn transpose<const R: usize, const C: usize>(m: &[[f32; C]; R]) -> [[f32; R]; C] {
    let mut t = [[0.0; R]; C];
    let mut r = 0;
    while r < R {
        let mut c = 0;
        while c < C {
            t[c][r] = m[r][c];
            c += 1;
        }
        r += 1;
    }
    t
}

/// Whether this path handles `d`; conv2d.rs handles every shape.
pub fn applies(d: &Conv2dDims) -> bool {
    d.kernel == 3
        && d.in_channels.is_multiple_of(LANES)
        && d.out_channels.is_multiple_of(LANES)
        && d.in_channels > 0
        && d.out_channels > 0
}

/// Tiles per sample: the output cut into 4x4 tiles, the ragged edge padded.
pub fn tile_count(d: &Conv2dDims) -> usize {
    d.out_height().div_ceil(TILE) * d.out_width().div_ceil(TILE)
}

/// Scratch for one sample's V (and, in the backward, dV): (36, T, C).
pub fn input_scratch_len(d: &Conv2dDims) -> usize {
    POINTS * tile_count(d) * d.in_channels
}

/// Scratch for one sample's M (and dM): (36, T, OC).
pub fn output_scratch_len(d: &Conv2dDims) -> usize {
    POINTS * tile_count(d) * d.out_channels
}

/// The transformed kernel U (or its gradient dU): (36, C, OC).
pub fn transformed_kernel_len(d: &Conv2dDims) -> usize {
    POINTS * d.in_channels * d.out_channels
}

/// y = m @ x for a constant matrix m and vectors of lanes; zero coefficients cost nothing.
#[inline(always)]
fn apply<const I: usize, const O: usize>(m: &[[f32; I]; O], x: &[Lanes; I]) -> [Lanes; O] {
    let mut y = [ZERO; O];
    for (yo, row) in y.iter_mut().zip(m) {
        for (&coef, xi) in row.iter().zip(x) {
            if coef != 0.0 {
                for (a, &b) in yo.iter_mut().zip(xi) {
                    *a += coef * b;
                }
            }
        }
    }
    y
}

/// m @ x @ m^T for an I x I tile of lanes.
#[inline(always)]
fn sandwich<const I: usize, const O: usize>(m: &[[f32; I]; O], x: &[[Lanes; I]; I]) -> [[Lanes; O]; O] {
    let mut left = [[ZERO; I]; O]; // m @ x
    for (lo, row) in left.iter_mut().zip(m) {
        for (&coef, xr) in row.iter().zip(x) {
            if coef != 0.0 {
                for (a, b) in lo.iter_mut().zip(xr) {
                    for (a, &b) in a.iter_mut().zip(b) {
                        *a += coef * b;
                    }
                }
            }
        }
    }
    let mut out = [[ZERO; O]; O];
    for (o, l) in out.iter_mut().zip(&left) {
        *o = apply(m, l);
    }
    out
}

#[inline(always)]
fn load(src: &[f32], at: usize) -> Lanes {
    src[at..at + LANES].try_into().unwrap_or(ZERO)
}

/// U = G g G^T for every (input, output) channel pair. u: (36, C, OC); kernel: (3, 3, C, OC).
pub fn kernel_transform(u: &mut [f32], kernel: &[f32], d: &Conv2dDims) {
    let pairs = d.in_channels * d.out_channels;
    for j in (0..pairs).step_by(LANES) {
        let mut g = [[ZERO; 3]; 3];
        for (ky, row) in g.iter_mut().enumerate() {
            for (kx, v) in row.iter_mut().enumerate() {
                *v = load(kernel, (ky * 3 + kx) * pairs + j);
            }
        }
        let t = sandwich(&G, &g);
        for (p, v) in t.iter().flatten().enumerate() {
            u[p * pairs + j..][..LANES].copy_from_slice(v);
        }
    }
}

/// The adjoint of `kernel_transform`: dkernel = G^T dU G (overwritten). dkernel: (3, 3, C, OC).
pub fn kernel_transform_adjoint(dkernel: &mut [f32], du: &[f32], d: &Conv2dDims) {
    let pairs = d.in_channels * d.out_channels;
    for j in (0..pairs).step_by(LANES) {
        let mut t = [[ZERO; ALPHA]; ALPHA];
        for (p, v) in t.iter_mut().flatten().enumerate() {
            *v = load(du, p * pairs + j);
        }
        let g = sandwich(&GT, &t);
        for (k, v) in g.iter().flatten().enumerate() {
            dkernel[k * pairs + j..][..LANES].copy_from_slice(v);
        }
    }
}

/// (tile index, top row, left column) of every tile in order. An iterator rather than a
/// closure so the loop bodies stay inside the AVX2-compiled callers.
#[inline(always)]
fn tiles(d: &Conv2dDims) -> impl Iterator<Item = (usize, usize, usize)> {
    let tiles_x = d.out_width().div_ceil(TILE);
    (0..tile_count(d)).map(move |t| (t, t / tiles_x * TILE, t % tiles_x * TILE))
}

/// Eight lanes with element-wise arithmetic, so the transforms below read as formulas and
/// compile to one vector instruction per operation.
#[derive(Clone, Copy)]
struct V(Lanes);

impl core::ops::Add for V {
    type Output = V;
    #[inline(always)]
    fn add(mut self, other: V) -> V {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
        self
    }
}

impl core::ops::Sub for V {
    type Output = V;
    #[inline(always)]
    fn sub(mut self, other: V) -> V {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a -= b;
        }
        self
    }
}

impl core::ops::Mul<V> for f32 {
    type Output = V;
    #[inline(always)]
    fn mul(self, mut v: V) -> V {
        for a in &mut v.0 {
            *a *= self;
        }
        v
    }
}

impl core::ops::Neg for V {
    type Output = V;
    #[inline(always)]
    fn neg(self) -> V {
        -1.0 * self
    }
}

// (No `array::map` or `array::from_fn` in the hot loops: they are not always inlined, and a
// call drops out of the AVX2 code into a generic copy.)
#[inline(always)]
fn six(x: &[Lanes; ALPHA]) -> [V; ALPHA] {
    let [x0, x1, x2, x3, x4, x5] = *x;
    [V(x0), V(x1), V(x2), V(x3), V(x4), V(x5)]
}

#[inline(always)]
fn lanes<const N: usize>(v: [V; N]) -> [Lanes; N] {
    let mut out = [ZERO; N];
    for (o, v) in out.iter_mut().zip(v) {
        *o = v.0;
    }
    out
}

// The 1-D transforms of the tiles, written out: the matrices' zeros and ones cost nothing and
// common terms are shared. The tests check each against its matrix.

/// B^T x: 6 inputs to 6 points.
#[inline(always)]
fn bt(x: &[Lanes; ALPHA]) -> [Lanes; ALPHA] {
    let [x0, x1, x2, x3, x4, x5] = six(x);
    let (p, q) = (x4 - 4.0 * x2, x3 - 4.0 * x1); // rows 1 and 2
    let (r, s) = (x4 - x2, 2.0 * (x3 - x1)); // rows 3 and 4
    lanes([4.0 * x0 - 5.0 * x2 + x4, p + q, p - q, r + s, r - s, 4.0 * x1 - 5.0 * x3 + x5])
}

/// B x (the adjoint of `bt`): 6 points back to 6 inputs.
#[inline(always)]
fn b(x: &[Lanes; ALPHA]) -> [Lanes; ALPHA] {
    let [x0, x1, x2, x3, x4, x5] = six(x);
    let (s12, d21, s34, d34) = (x1 + x2, x2 - x1, x3 + x4, x3 - x4);
    lanes([
        4.0 * x0,
        4.0 * (d21 + x5) - 2.0 * d34,
        -(5.0 * x0 + 4.0 * s12 + s34),
        2.0 * d34 - d21 - 5.0 * x5,
        x0 + s12 + s34,
        x5,
    ])
}

/// A^T x: 6 points to the 4 outputs.
#[inline(always)]
fn at(x: &[Lanes; ALPHA]) -> [Lanes; TILE] {
    let [x0, x1, x2, x3, x4, x5] = six(x);
    let (s12, d12, s34, d34) = (x1 + x2, x1 - x2, x3 + x4, x3 - x4);
    lanes([x0 + s12 + s34, d12 + 2.0 * d34, s12 + 4.0 * s34, d12 + 8.0 * d34 + x5])
}

/// A x (the adjoint of `at`): 4 outputs back to 6 points.
#[inline(always)]
fn a(x: &[Lanes; TILE]) -> [Lanes; ALPHA] {
    let [x0, x1, x2, x3] = *x;
    let (x0, x1, x2, x3) = (V(x0), V(x1), V(x2), V(x3));
    let (even, odd, even4, odd4) = (x0 + x2, x1 + x3, x0 + 4.0 * x2, 2.0 * x1 + 8.0 * x3);
    lanes([x0, even + odd, even - odd, even4 + odd4, even4 - odd4, x3])
}

/// V = B^T d B for every 6x6 input tile (zero beyond the image). v: (36, T, C); inp: (H, W, C).
/// Each 2-D transform is 1-D ones over the columns, then over the rows, so only a dozen
/// vectors are live at a time.
#[allow(clippy::needless_range_loop)] // j indexes a column of a row-major tile
#[inline(always)]
fn input_transform(v: &mut [f32], inp: &[f32], d: &Conv2dDims) {
    let (c, t_count) = (d.in_channels, tile_count(d));
    let mut half = [[ZERO; ALPHA]; ALPHA]; // B^T d, by rows (every element rewritten per tile)
    for (t, y0, x0) in tiles(d) {
        let (rows, cols) = (ALPHA.min(d.height - y0), ALPHA.min(d.width - x0));
        for c0 in (0..c).step_by(LANES) {
            for j in 0..ALPHA {
                let mut column = [ZERO; ALPHA];
                for (i, x) in column.iter_mut().enumerate() {
                    if i < rows && j < cols {
                        *x = load(inp, ((y0 + i) * d.width + x0 + j) * c + c0);
                    }
                }
                let column = bt(&column);
                for i in 0..ALPHA {
                    half[i][j] = column[i];
                }
            }
            for (i, row) in half.iter().enumerate() {
                for (j, lanes) in bt(row).iter().enumerate() {
                    v[((i * ALPHA + j) * t_count + t) * c + c0..][..LANES].copy_from_slice(lanes);
                }
            }
        }
    }
}

/// The adjoint of `input_transform`: dinp += B dV B^T, tile by tile (tiles overlap).
#[allow(clippy::needless_range_loop)] // j indexes a column of a row-major tile
#[inline(always)]
fn input_transform_adjoint(dinp: &mut [f32], dv: &[f32], d: &Conv2dDims) {
    let (c, t_count) = (d.in_channels, tile_count(d));
    let mut half = [[ZERO; ALPHA]; ALPHA]; // B dV, by rows (every element rewritten per tile)
    for (t, y0, x0) in tiles(d) {
        let (rows, cols) = (ALPHA.min(d.height - y0), ALPHA.min(d.width - x0));
        for c0 in (0..c).step_by(LANES) {
            for j in 0..ALPHA {
                let mut column = [ZERO; ALPHA];
                for (i, x) in column.iter_mut().enumerate() {
                    *x = load(dv, ((i * ALPHA + j) * t_count + t) * c + c0);
                }
                let column = b(&column);
                for i in 0..ALPHA {
                    half[i][j] = column[i];
                }
            }
            for (i, row) in half.iter().enumerate().take(rows) {
                for (j, lanes) in b(row).iter().enumerate().take(cols) {
                    let at = ((y0 + i) * d.width + x0 + j) * c + c0;
                    for (x, g) in dinp[at..at + LANES].iter_mut().zip(lanes) {
                        *x += g;
                    }
                }
            }
        }
    }
}

/// out = A^T M A + bias (then ReLU) for every tile, the ragged edge cropped. out: (OH, OW, OC).
#[allow(clippy::needless_range_loop)] // j indexes a column of a row-major tile
#[inline(always)]
fn output_transform(out: &mut [f32], m: &[f32], bias: &[f32], d: &Conv2dDims, relu: bool) {
    let (oc, t_count, (oh, ow)) = (d.out_channels, tile_count(d), (d.out_height(), d.out_width()));
    let mut half = [[ZERO; ALPHA]; TILE]; // A^T M, by rows (every element rewritten per tile)
    for (t, y0, x0) in tiles(d) {
        let (rows, cols) = (TILE.min(oh - y0), TILE.min(ow - x0));
        for o0 in (0..oc).step_by(LANES) {
            for q in 0..ALPHA {
                let mut column = [ZERO; ALPHA];
                for (p, x) in column.iter_mut().enumerate() {
                    *x = load(m, ((p * ALPHA + q) * t_count + t) * oc + o0);
                }
                let column = at(&column);
                for i in 0..TILE {
                    half[i][q] = column[i];
                }
            }
            let bias = load(bias, o0);
            for (i, row) in half.iter().enumerate().take(rows) {
                for (j, lanes) in at(row).iter().enumerate().take(cols) {
                    let at = ((y0 + i) * ow + x0 + j) * oc + o0;
                    for ((y, &v), &b) in out[at..at + LANES].iter_mut().zip(lanes).zip(&bias) {
                        let v = v + b;
                        // `v < 0` keeps a NaN, as relu_forward does.
                        *y = if relu && v < 0.0 { 0.0 } else { v };
                    }
                }
            }
        }
    }
}

/// The adjoint of `output_transform`'s linear part: dM = A dY A^T per tile (dY zero beyond
/// the output). dm: (36, T, OC); dout: (OH, OW, OC).
#[allow(clippy::needless_range_loop)] // j indexes a column of a row-major tile
#[inline(always)]
fn output_transform_adjoint(dm: &mut [f32], dout: &[f32], d: &Conv2dDims) {
    let (oc, t_count, (oh, ow)) = (d.out_channels, tile_count(d), (d.out_height(), d.out_width()));
    let mut half = [[ZERO; TILE]; ALPHA]; // A dY, by rows (every element rewritten per tile)
    for (t, y0, x0) in tiles(d) {
        let (rows, cols) = (TILE.min(oh - y0), TILE.min(ow - x0));
        for o0 in (0..oc).step_by(LANES) {
            for j in 0..TILE {
                let mut column = [ZERO; TILE];
                for (i, x) in column.iter_mut().enumerate() {
                    if i < rows && j < cols {
                        *x = load(dout, ((y0 + i) * ow + x0 + j) * oc + o0);
                    }
                }
                let column = a(&column);
                for p in 0..ALPHA {
                    half[p][j] = column[p];
                }
            }
            for (p, row) in half.iter().enumerate() {
                for (q, lanes) in a(row).iter().enumerate() {
                    dm[((p * ALPHA + q) * t_count + t) * oc + o0..][..LANES].copy_from_slice(lanes);
                }
            }
        }
    }
}

/// One sample's forward. out: (OH, OW, OC); v, m: scratch of `input_scratch_len` and
/// `output_scratch_len`; inp: (H, W, C); u: `kernel_transform`'s output; bias: (OC).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_winograd_forward(
    out: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    inp: &[f32],
    u: &[f32],
    bias: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::layers::gemm::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        unsafe { forward_avx2(out, v, m, inp, u, bias, d, relu) };
        return;
    }
    forward(out, v, m, inp, u, bias, d, relu);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_avx2(
    out: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    inp: &[f32],
    u: &[f32],
    bias: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    forward(out, v, m, inp, u, bias, d, relu);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward(
    out: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    inp: &[f32],
    u: &[f32],
    bias: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    let (t, c, oc) = (tile_count(d), d.in_channels, d.out_channels);
    input_transform(v, inp, d);
    for p in 0..POINTS {
        let (vp, up) = (&v[p * t * c..][..t * c], &u[p * c * oc..][..c * oc]);
        gemm(1.0, Mat::rows(vp, t, c, c), Mat::rows(up, c, oc, oc), 0.0, &mut m[p * t * oc..][..t * oc], oc);
    }
    output_transform(out, m, bias, d, relu);
}

/// One sample's gradients. dout: (OH, OW, OC), masked by the ReLU in place. du (36, C, OC)
/// and dbias (OC) ACCUMULATE (turn du into the kernel's gradient with
/// `kernel_transform_adjoint`); dinp (H, W, C), when given, is overwritten. v and m are
/// scratch as in the forward; u is the forward's transformed kernel.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_winograd_backward(
    dinp: Option<&mut [f32]>,
    du: &mut [f32],
    dbias: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    dout: &mut [f32],
    out: &[f32],
    inp: &[f32],
    u: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::layers::gemm::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        unsafe { backward_avx2(dinp, du, dbias, v, m, dout, out, inp, u, d, relu) };
        return;
    }
    backward(dinp, du, dbias, v, m, dout, out, inp, u, d, relu);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_avx2(
    dinp: Option<&mut [f32]>,
    du: &mut [f32],
    dbias: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    dout: &mut [f32],
    out: &[f32],
    inp: &[f32],
    u: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    backward(dinp, du, dbias, v, m, dout, out, inp, u, d, relu);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward(
    dinp: Option<&mut [f32]>,
    du: &mut [f32],
    dbias: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    dout: &mut [f32],
    out: &[f32],
    inp: &[f32],
    u: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    let (t, c, oc) = (tile_count(d), d.in_channels, d.out_channels);
    let dout = &mut dout[..d.out_len()];
    if relu {
        relu_backward(dout, &out[..d.out_len()]);
    }
    for row in dout.chunks_exact(oc) {
        for (b, g) in dbias.iter_mut().zip(row) {
            *b += g;
        }
    }
    // dU[p] += V[p]^T dM[p]: the forward's V is recomputed (cheaper than keeping it).
    input_transform(v, inp, d);
    output_transform_adjoint(m, dout, d);
    for p in 0..POINTS {
        let (vp, mp) = (&v[p * t * c..][..t * c], &m[p * t * oc..][..t * oc]);
        gemm(1.0, Mat::transposed(vp, t, c, c), Mat::rows(mp, t, oc, oc), 1.0, &mut du[p * c * oc..][..c * oc], oc);
    }
    if let Some(dinp) = dinp {
        // dV[p] = dM[p] U[p]^T, written over V, then scattered back through B.
        for p in 0..POINTS {
            let (mp, up) = (&m[p * t * oc..][..t * oc], &u[p * c * oc..][..c * oc]);
            gemm(1.0, Mat::rows(mp, t, oc, oc), Mat::transposed(up, c, oc, oc), 0.0, &mut v[p * t * c..][..t * c], c);
        }
        let dinp = &mut dinp[..d.in_len()];
        dinp.fill(0.0);
        input_transform_adjoint(dinp, v, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;
    use crate::layers::conv2d;
    use crate::layers::gradcheck::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// The transforms' defining identity in 1-D: A^T [(G g) . (B^T d)] is the correlation
    /// of d (6 values) with g (3 values), in f64 from the same f32 matrices.
    #[test]
    fn one_dimensional_identity_holds() {
        let mut rng = Rng::new(5);
        for _ in 0..20 {
            let d: Vec<f64> = (0..6).map(|_| rng.next_f32() as f64 - 0.5).collect();
            let g: Vec<f64> = (0..3).map(|_| rng.next_f32() as f64 - 0.5).collect();
            let gg: Vec<f64> = G.iter().map(|r| r.iter().zip(&g).map(|(&a, b)| a as f64 * b).sum()).collect();
            let bd: Vec<f64> = BT.iter().map(|r| r.iter().zip(&d).map(|(&a, b)| a as f64 * b).sum()).collect();
            for (i, row) in AT.iter().enumerate() {
                let y: f64 = row.iter().enumerate().map(|(p, &a)| a as f64 * gg[p] * bd[p]).sum();
                let want: f64 = (0..3).map(|k| d[i + k] * g[k]).sum();
                assert!((y - want).abs() < 1e-6, "output {i}: {y} vs {want}");
            }
        }
    }

    /// The written-out 1-D transforms are the matrices (and their transposes).
    #[test]
    fn written_out_transforms_match_the_matrices() {
        let mut rng = Rng::new(9);
        let mut lanes = || -> Lanes { core::array::from_fn(|_| rng.next_f32() - 0.5) };
        let x6: [Lanes; 6] = core::array::from_fn(|_| lanes());
        let x4: [Lanes; 4] = core::array::from_fn(|_| lanes());
        let close = |what: &str, got: &[Lanes], want: &[Lanes]| {
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!((g - w).abs() <= 1e-5, "{what}: {g} vs {w}");
            }
        };
        close("B^T", &bt(&x6), &apply(&BT, &x6));
        close("B", &b(&x6), &apply(&B, &x6));
        close("A^T", &at(&x6), &apply(&AT, &x6));
        close("A", &a(&x4), &apply(&A, &x4));
    }

    fn max_abs(v: &[f32]) -> f64 {
        v.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64))
    }

    fn random_case(d: &Conv2dDims, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(seed);
        let x = random_vec(&mut rng, d.in_len(), -1.0, 1.0);
        let w = random_vec(&mut rng, 9 * d.in_channels * d.out_channels, -0.5, 0.5);
        let b = random_vec(&mut rng, d.out_channels, -0.1, 0.1);
        let r = random_vec(&mut rng, d.out_len(), -1.0, 1.0);
        (x, w, b, r)
    }

    /// Forward and every gradient against conv2d.rs's im2col path, itself checked against
    /// finite differences; shapes with ragged tiles on either edge.
    #[test]
    fn matches_the_im2col_convolution() {
        let shapes = [(26, 26, 32, 64), (6, 6, 8, 8), (7, 9, 8, 16), (13, 5, 16, 8), (3, 3, 8, 8)];
        for (seed, &(height, width, in_channels, out_channels)) in shapes.iter().enumerate() {
            for relu in [false, true] {
                let d = Conv2dDims { batch: 1, height, width, in_channels, out_channels, kernel: 3 };
                assert!(applies(&d));
                let (x, w, b, r) = random_case(&d, seed as u64 * 2 + relu as u64);
                let rows = d.out_height() * d.out_width();
                let (mut col, mut dcol) = (vec![0.0; rows * d.patch_len()], vec![0.0; rows * d.patch_len()]);
                let mut want = vec![0.0; d.out_len()];
                conv2d::conv2d_forward(&mut want, &mut col, &x, &w, &b, &d, relu);

                let (mut v, mut m) = (vec![f32::NAN; input_scratch_len(&d)], vec![f32::NAN; output_scratch_len(&d)]);
                let mut u = vec![f32::NAN; transformed_kernel_len(&d)];
                kernel_transform(&mut u, &w, &d);
                let mut y = vec![f32::NAN; d.out_len()];
                conv2d_winograd_forward(&mut y, &mut v, &mut m, &x, &u, &b, &d, relu);
                // F(4x4, 3x3) rounds to ~1e-5 of the values' scale (Lavin & Gray), not of each value.
                assert_close("winograd forward", &y, &to_f64(&want), 3e-5 * max_abs(&want), 0.0);

                let (mut dw_want, mut db_want, mut dx_want) =
                    (vec![0.0; w.len()], vec![0.0; b.len()], vec![0.0; x.len()]);
                let mut dy = r.clone();
                conv2d::conv2d_backward(
                    Some(&mut dx_want),
                    &mut dw_want,
                    &mut db_want,
                    &mut col,
                    &mut dcol,
                    &mut dy,
                    &want,
                    &x,
                    &w,
                    &d,
                    relu,
                );

                let mut du = vec![0.0; u.len()];
                let (mut db, mut dx, mut dw) = (vec![0.0; b.len()], vec![f32::NAN; x.len()], vec![f32::NAN; w.len()]);
                let mut dy = r.clone();
                conv2d_winograd_backward(
                    Some(&mut dx),
                    &mut du,
                    &mut db,
                    &mut v,
                    &mut m,
                    &mut dy,
                    &y,
                    &x,
                    &u,
                    &d,
                    relu,
                );
                kernel_transform_adjoint(&mut dw, &du, &d);
                assert_close("winograd dinp", &dx, &to_f64(&dx_want), 3e-5 * max_abs(&dx_want), 0.0);
                assert_close("winograd dkernel", &dw, &to_f64(&dw_want), 3e-5 * max_abs(&dw_want), 0.0);
                assert_close("winograd dbias", &db, &to_f64(&db_want), 1e-5 * max_abs(&db_want), 0.0);

                // du and dbias accumulate; without dinp the parameter gradients are the same.
                let mut dy = r.clone();
                conv2d_winograd_backward(None, &mut du, &mut db, &mut v, &mut m, &mut dy, &y, &x, &u, &d, relu);
                kernel_transform_adjoint(&mut dw, &du, &d);
                let twice: Vec<f64> = dw_want.iter().map(|&g| 2.0 * g as f64).collect();
                assert_close("winograd dkernel accumulates", &dw, &twice, 6e-5 * max_abs(&dw_want), 0.0);
            }
        }
    }

    /// Finite differences straight through the Winograd path, on a small case.
    #[test]
    fn gradients_match_finite_differences() {
        let d = Conv2dDims { batch: 1, height: 7, width: 6, in_channels: 8, out_channels: 8, kernel: 3 };
        let (x, w, b, r) = random_case(&d, 11);
        let (mut v, mut m, mut u) = (
            vec![0.0; input_scratch_len(&d)],
            vec![0.0; output_scratch_len(&d)],
            vec![0.0; transformed_kernel_len(&d)],
        );
        kernel_transform(&mut u, &w, &d);
        let mut y = vec![0.0; d.out_len()];
        conv2d_winograd_forward(&mut y, &mut v, &mut m, &x, &u, &b, &d, false);
        let (mut du, mut db, mut dx, mut dw) =
            (vec![0.0; u.len()], vec![0.0; b.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
        let mut dy = r.clone();
        conv2d_winograd_backward(Some(&mut dx), &mut du, &mut db, &mut v, &mut m, &mut dy, &y, &x, &u, &d, false);
        kernel_transform_adjoint(&mut dw, &du, &d);
        // The loss is linear in x and in w, so central differences are exact up to rounding.
        let naive = |x: &[f64], w: &[f64]| -> f64 {
            let mut s = 0.0;
            for oy in 0..d.out_height() {
                for ox in 0..d.out_width() {
                    for o in 0..d.out_channels {
                        let mut acc = b[o] as f64;
                        for k in 0..9 {
                            for ci in 0..d.in_channels {
                                acc += x[((oy + k / 3) * d.width + ox + k % 3) * d.in_channels + ci]
                                    * w[(k * d.in_channels + ci) * d.out_channels + o];
                            }
                        }
                        s += acc * r[(oy * d.out_width() + ox) * d.out_channels + o] as f64;
                    }
                }
            }
            s
        };
        let (x64, w64) = (to_f64(&x), to_f64(&w));
        assert_close("winograd dinp", &dx, &numeric_grad(&|x: &[f64]| naive(x, &w64), &x64, 1e-3), 1e-4, 1e-4);
        assert_close("winograd dkernel", &dw, &numeric_grad(&|w: &[f64]| naive(&x64, w), &w64, 1e-3), 1e-4, 1e-4);
    }
}
