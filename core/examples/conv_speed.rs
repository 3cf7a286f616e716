//! Development aid: one sample's conv2 forward and backward, Winograd against im2col, and
//! conv1's, direct against im2col; single thread, microseconds of CPU time per sample (median of
//! alternating rounds).
use mnist_core::layers::{conv2d, conv2d_direct, conv2d_winograd as w};
use mnist_core::shape::Conv2dDims;

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_seconds;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let d = Conv2dDims { batch: 1, height: 26, width: 26, in_channels: 32, out_channels: 64, kernel: 3 };
    let x: Vec<f32> = (0..d.in_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let k: Vec<f32> = (0..9 * 32 * 64).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let b = vec![0.01f32; 64];
    let mut y = vec![0.0; d.out_len()];
    let mut dy = vec![0.0; d.out_len()];
    let mut dx = vec![0.0; d.in_len()];
    let rows = d.out_height() * d.out_width();
    let (mut col, mut dcol) = (vec![0.0; rows * d.patch_len()], vec![0.0; rows * d.patch_len()]);
    let (mut v, mut m, mut u) = (
        vec![0.0; w::input_scratch_len(&d)],
        vec![0.0; w::output_scratch_len(&d)],
        vec![0.0; w::transformed_kernel_len(&d)],
    );
    let mut du = u.clone();
    let (mut dk, mut db) = (vec![0.0; k.len()], vec![0.0; 64]);
    w::kernel_transform(&mut u, &k, &d);
    let n = 200;
    let time = |f: &mut dyn FnMut()| {
        let t = cpu_seconds();
        for _ in 0..n {
            f();
        }
        (cpu_seconds() - t) * 1e6 / n as f64
    };
    let (mut a, mut bb, mut c, mut e) = (vec![], vec![], vec![], vec![]);
    for _ in 0..9 {
        a.push(time(&mut || conv2d::conv2d_forward(&mut y, &mut col, &x, &k, &b, &d, true)));
        bb.push(time(&mut || w::conv2d_winograd_forward(&mut y, &mut v, &mut m, &x, &u, &b, &d, true)));
        c.push(time(&mut || {
            dy.fill(0.1);
            conv2d::conv2d_backward(Some(&mut dx), &mut dk, &mut db, &mut col, &mut dcol, &mut dy, &y, &x, &k, &d, true)
        }));
        e.push(time(&mut || {
            dy.fill(0.1);
            w::conv2d_winograd_backward(Some(&mut dx), &mut du, &mut db, &mut v, &mut m, &mut dy, &y, &x, &u, &d, true)
        }));
    }
    let d1 = Conv2dDims { batch: 1, height: 28, width: 28, in_channels: 1, out_channels: 32, kernel: 3 };
    let x1: Vec<f32> = (0..d1.in_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let k1 = &k[..9 * 32];
    let (mut y1, mut dy1) = (vec![0.0; d1.out_len()], vec![0.0; d1.out_len()]);
    let mut col1 = vec![0.0; d1.out_height() * d1.out_width() * 9];
    let mut dcol1 = col1.clone();
    let (mut dk1, mut db1) = (vec![0.0; 9 * 32], vec![0.0; 32]);
    let (mut f, mut g, mut h, mut i) = (vec![], vec![], vec![], vec![]);
    for _ in 0..9 {
        f.push(time(&mut || conv2d::conv2d_forward(&mut y1, &mut col1, &x1, k1, &b[..32], &d1, true)));
        g.push(time(&mut || conv2d_direct::conv2d_direct_forward(&mut y1, &x1, k1, &b[..32], &d1, true)));
        h.push(time(&mut || {
            dy1.fill(0.1);
            conv2d::conv2d_backward(None, &mut dk1, &mut db1, &mut col1, &mut dcol1, &mut dy1, &y1, &x1, k1, &d1, true)
        }));
        i.push(time(&mut || {
            dy1.fill(0.1);
            conv2d_direct::conv2d_direct_backward(None, &mut dk1, &mut db1, &mut dy1, &y1, &x1, k1, &d1, true)
        }));
    }
    println!(
        "conv1 us/sample  fwd im2col {:.1}  direct {:.1}   bwd im2col {:.1}  direct {:.1}",
        median(f),
        median(g),
        median(h),
        median(i)
    );
    println!(
        "conv2 us/sample  fwd im2col {:.1}  winograd {:.1}   bwd im2col {:.1}  winograd {:.1}",
        median(a),
        median(bb),
        median(c),
        median(e)
    );
}
