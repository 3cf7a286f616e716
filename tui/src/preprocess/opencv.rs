//! The sample's MMS handler's preprocessing, reproduced bit for bit: OpenCV's greyscale decoding
//! (`imdecode(bytes, IMREAD_GRAYSCALE)`: libjpeg-turbo's decoder, libpng's grey conversion) and
//! OpenCV's fixed-point bilinear resize of 8-bit images (`resize(..., INTER_LINEAR)`), then / 255.
//! Leaves out EXIF orientation, CMYK JPEGs, PNM maxvals other than 255 and 16-bit colour PNGs
//! with a gamma chunk (decoded, but not to OpenCV's last bit); and any other format.

use std::io::Cursor;

use image::{ImageDecoder, ImageFormat};

use super::check_pixels;

/// An 8-bit greyscale image, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct GreyU8 {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>, // (height, width)
}

/// Decodes PNG, JPEG or PNM into 8-bit grey as OpenCV's `IMREAD_GRAYSCALE` does; refuses an
/// image whose header claims more than `max_pixels` pixels before decoding it.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<GreyU8, String> {
    let grey = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => decode_jpeg(bytes, max_pixels),
        Ok(ImageFormat::Png) => decode_png(bytes, max_pixels),
        Ok(ImageFormat::Pnm) => decode_pnm(bytes, max_pixels),
        _ => Err("it is not a PNG, JPEG or PNM (PGM, PPM, PBM) image".into()),
    }?;
    if grey.width == 0 || grey.height == 0 {
        return Err("it has no pixels".into());
    }
    Ok(grey)
}

/// libjpeg(-turbo) asked for JCS_GRAYSCALE output, as OpenCV asks: the luma (Y) plane after
/// its accurate integer IDCT, the chroma skipped.
fn decode_jpeg(bytes: &[u8], max_pixels: u64) -> Result<GreyU8, String> {
    // libjpeg reports errors by unwinding (mozjpeg turns most into io::Error); catch the rest.
    let decoded = std::panic::catch_unwind(|| -> Result<GreyU8, String> {
        let failed = |e: std::io::Error| format!("not a readable JPEG: {e}");
        let decompress = mozjpeg::Decompress::new_mem(bytes).map_err(failed)?;
        let (width, height) = decompress.size();
        check_pixels(width as u64, height as u64, max_pixels)?;
        let mut started = decompress.grayscale().map_err(failed)?;
        let pixels: Vec<u8> = started.read_scanlines().map_err(failed)?;
        started.finish().map_err(failed)?;
        if pixels.len() != width * height {
            return Err(format!("not a readable JPEG: {} grey pixels decoded for {width}x{height}", pixels.len()));
        }
        Ok(GreyU8 { width, height, pixels })
    });
    decoded.unwrap_or_else(|panic| {
        let reason = panic.downcast_ref::<String>().map_or("the decoder failed", |s| s.as_str());
        Err(format!("not a readable JPEG: {reason}"))
    })
}

/// libpng's `png_set_rgb_to_gray(png, 1, 0.299, 0.587)` weights in 15-bit fixed point.
const RED: u32 = 29_900 * 32_768 / 100_000; // 9797
const GREEN: u32 = 58_700 * 32_768 / 100_000; // 19234
const BLUE: u32 = 32_768 - RED - GREEN; // 3737

/// OpenCV strips the alpha channel (no compositing), has libpng turn colour into grey (in
/// linear light when the file states a gamma) and keeps the high byte of 16-bit samples.
fn decode_png(bytes: &[u8], max_pixels: u64) -> Result<GreyU8, String> {
    let failed = |e: png::DecodingError| format!("not a readable PNG: {e}");
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Palette to RGB(A), low-bit grey to 8 bits (scaled, as libpng does); 16 bits kept.
    decoder.set_transformations(png::Transformations::EXPAND);
    let header = decoder.read_header_info().map_err(failed)?;
    check_pixels(header.width as u64, header.height as u64, max_pixels)?;
    let mut reader = decoder.read_info().map_err(failed)?;
    // The sRGB chunk implies libpng's sRGB gamma (45455, i.e. 1/2.2).
    let info = reader.info();
    let file_gamma = if info.srgb.is_some() { Some(45_455) } else { info.gama_chunk.map(|g| g.into_scaled()) };
    let size = reader.output_buffer_size().ok_or("not a readable PNG: the image is too large")?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(failed)?;
    let (width, height) = (frame.width as usize, frame.height as usize);
    let channels = frame.color_type.samples();
    let wide = frame.bit_depth == png::BitDepth::Sixteen;
    let sample_bytes = if wide { 2 } else { 1 };
    let gamma = file_gamma.filter(|&g| gamma_significant(g)).map(GammaTables::new);
    let mut pixels = Vec::with_capacity(width * height);
    for row in buf.chunks(frame.line_size).take(height) {
        for pixel in row.chunks_exact(channels * sample_bytes).take(width) {
            let sample = |i: usize| {
                if wide {
                    u32::from(u16::from_be_bytes([pixel[2 * i], pixel[2 * i + 1]]))
                } else {
                    u32::from(pixel[i])
                }
            };
            let grey = if channels >= 3 {
                let (r, g, b) = (sample(0), sample(1), sample(2));
                match (&gamma, wide) {
                    _ if r == g && g == b => r,
                    (Some(tables), false) => tables.rgb_to_grey(r, g, b),
                    (None, false) => (RED * r + GREEN * g + BLUE * b) >> 15,
                    (_, true) => (RED * r + GREEN * g + BLUE * b + 16_384) >> 15,
                }
            } else {
                sample(0)
            };
            pixels.push(if wide { (grey >> 8) as u8 } else { grey as u8 });
        }
    }
    if pixels.len() != width * height {
        return Err("not a readable PNG: the image data is shorter than its header says".into());
    }
    Ok(GreyU8 { width, height, pixels })
}

/// libpng ignores a gamma within 5% of 1.
fn gamma_significant(gamma: u32) -> bool {
    !(95_000..=105_000).contains(&gamma)
}

/// libpng's 8-bit tables for converting colour to grey in linear light.
struct GammaTables {
    to_linear: [u8; 256],
    from_linear: [u8; 256],
}

impl GammaTables {
    fn new(file_gamma: u32) -> GammaTables {
        // png_reciprocal: 1/gamma in the same fixed point (x 100000).
        let reciprocal = (1e10 / file_gamma as f64 + 0.5).floor();
        GammaTables { to_linear: gamma_table(reciprocal), from_linear: gamma_table(file_gamma as f64) }
    }

    fn rgb_to_grey(&self, r: u32, g: u32, b: u32) -> u32 {
        let linear = |v: u32| u32::from(self.to_linear[v as usize]);
        let sum = (RED * linear(r) + GREEN * linear(g) + BLUE * linear(b) + 16_384) >> 15;
        u32::from(self.from_linear[sum.min(255) as usize])
    }
}

/// png_build_8bit_table: 255 (v/255)^(gamma/100000), rounded; 0 and 255 map to themselves.
fn gamma_table(gamma: f64) -> [u8; 256] {
    let mut table = [0u8; 256];
    for (v, out) in table.iter_mut().enumerate() {
        *out = if v == 0 || v == 255 {
            v as u8
        } else {
            (255.0 * (v as f64 / 255.0).powf(gamma * 1e-5) + 0.5).floor() as u8
        };
    }
    table
}

/// OpenCV reads PGM as it is and turns PPM into grey with its own 14-bit BT.601 weights.
fn decode_pnm(bytes: &[u8], max_pixels: u64) -> Result<GreyU8, String> {
    let decoder =
        image::codecs::pnm::PnmDecoder::new(Cursor::new(bytes)).map_err(|e| format!("not a readable PNM: {e}"))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width as u64, height as u64, max_pixels)?;
    let image = image::DynamicImage::from_decoder(decoder).map_err(|e| format!("not a readable PNM: {e}"))?;
    let pixels = match image {
        image::DynamicImage::ImageLuma8(grey) => grey.into_raw(),
        image::DynamicImage::ImageRgb8(rgb) => rgb
            .as_raw()
            .chunks_exact(3)
            .map(|p| ((u32::from(p[0]) * 4899 + u32::from(p[1]) * 9617 + u32::from(p[2]) * 1868 + 8192) >> 14) as u8)
            .collect(),
        other => other.to_luma8().into_raw(),
    };
    Ok(GreyU8 { width: width as usize, height: height as usize, pixels })
}

/// OpenCV's INTER_LINEAR coefficients are 11-bit fixed point.
const COEF_SCALE: f32 = 2048.0;

/// One output position: the two source positions it reads and their weights (x 2048).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    first: usize,
    second: usize,
    weights: [i32; 2],
}

/// OpenCV's table for one axis: source position (d + 0.5) scale - 0.5, its fraction in f32,
/// weights rounded half to even. Horizontally a position outside the image is clamped with
/// its fraction dropped; vertically only the rows are clamped and the weights stay.
fn taps(dst: usize, src: usize, horizontal: bool) -> Vec<Tap> {
    let scale = 1.0 / (dst as f64 / src as f64);
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let position = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut first = position.floor() as i64;
            let mut fraction = position - first as f32;
            if horizontal && first < 0 {
                (first, fraction) = (0, 0.0);
            }
            if horizontal && first >= last {
                (first, fraction) = (last, 0.0);
            }
            let weight = |w: f32| (w * COEF_SCALE).round_ties_even() as i32;
            Tap {
                first: first.clamp(0, last) as usize,
                second: (first + 1).clamp(0, last) as usize,
                weights: [weight(1.0 - fraction), weight(fraction)],
            }
        })
        .collect()
}

/// `cv::resize(src, (width, height), INTER_LINEAR)` for 8-bit grey, to the last bit: a
/// horizontal pass in exact integers, then the vertical pass as OpenCV's SIMD code rounds it
/// (each row's sum shifted right by 4, multiplied by its weight keeping the high 16 bits, the
/// two added and rounded by 2 bits). An exact halving in both directions is OpenCV's 2x2
/// average instead. Checked against opencv-python 4.8 and MXNet 1.9.1's OpenCV for outputs
/// 28 pixels wide (OpenCV rounds the last columns of narrower outputs differently).
pub fn resize_linear(src: &GreyU8, width: usize, height: usize) -> GreyU8 {
    if (src.width, src.height) == (width, height) {
        return src.clone();
    }
    let at = |x: usize, y: usize| u32::from(src.pixels[y * src.width + x]);
    let mut pixels = Vec::with_capacity(width * height);
    if src.width == 2 * width && src.height == 2 * height {
        for y in 0..height {
            for x in 0..width {
                let sum = at(2 * x, 2 * y) + at(2 * x + 1, 2 * y) + at(2 * x, 2 * y + 1) + at(2 * x + 1, 2 * y + 1);
                pixels.push(((sum + 2) >> 2) as u8);
            }
        }
        return GreyU8 { width, height, pixels };
    }
    let (columns, rows) = (taps(width, src.width, true), taps(height, src.height, false));
    // The horizontal pass at one source row and output column: exact integers.
    let horizontal = |y: usize, t: &Tap| at(t.first, y) as i32 * t.weights[0] + at(t.second, y) as i32 * t.weights[1];
    let high = |sum: i32, weight: i32| ((sum >> 4) * weight) >> 16;
    for row in &rows {
        for column in &columns {
            let (top, bottom) = (horizontal(row.first, column), horizontal(row.second, column));
            let value = (high(top, row.weights[0]) + high(bottom, row.weights[1]) + 2) >> 2;
            pixels.push(value.clamp(0, 255) as u8);
        }
    }
    GreyU8 { width, height, pixels }
}

/// The handler's model input: resized with `resize_linear`, then each byte / 255 in f32.
pub fn handler_input(grey: &GreyU8, width: usize, height: usize) -> Vec<f32> {
    resize_linear(grey, width, height).pixels.iter().map(|&v| v as f32 / 255.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_core::codec::npy::{self, NpyData};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/serve");

    fn read_u8_npy(name: &str) -> (Vec<usize>, Vec<u8>) {
        let array = npy::read(&std::fs::read(format!("{FIXTURES}/{name}")).unwrap()).unwrap();
        match array.data {
            NpyData::U8(values) => (array.shape, values),
            other => panic!("{name}: {:?}", other.dtype()),
        }
    }

    /// The synthetic image of make_fixtures.py's `noise`.
    fn noise(width: usize, height: usize, seed: u64) -> GreyU8 {
        let pixels = (0..height as u64)
            .flat_map(|y| {
                (0..width as u64).map(move |x| {
                    let h = (x * 73_856_093) ^ (y * 19_349_663) ^ (seed * 83_492_791);
                    ((h.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF) >> 24) as u8
                })
            })
            .collect();
        GreyU8 { width, height, pixels }
    }

    /// The first few differing pixels, for the failure message.
    fn differences(ours: &[u8], opencv: &[u8]) -> Vec<(usize, u8, u8)> {
        ours.iter()
            .zip(opencv)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (&a, &b))| (i, a, b))
            .take(5)
            .collect()
    }

    #[test]
    fn the_bilinear_resize_matches_opencv_on_120_sizes() {
        let (shape, expected) = read_u8_npy("opencv_resize.npy");
        let cases = std::fs::read_to_string(format!("{FIXTURES}/opencv_resize.txt")).unwrap();
        let cases: Vec<Vec<usize>> =
            cases.lines().map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect()).collect();
        assert_eq!(shape, [cases.len(), 28, 28]);
        for (case, opencv) in cases.iter().zip(expected.chunks_exact(784)) {
            let ours = resize_linear(&noise(case[0], case[1], case[2] as u64), 28, 28);
            assert_eq!((ours.width, ours.height), (28, 28));
            assert!(
                ours.pixels == opencv,
                "{}x{}: (index, ours, OpenCV) {:?}",
                case[0],
                case[1],
                differences(&ours.pixels, opencv)
            );
        }
    }

    #[test]
    fn decoding_and_resizing_the_fixture_images_matches_opencv() {
        let (shape, expected) = read_u8_npy("opencv_28x28.npy");
        let names = std::fs::read_to_string(format!("{FIXTURES}/images.txt")).unwrap();
        let names: Vec<&str> = names.lines().collect();
        assert_eq!(shape, [names.len(), 28, 28]);
        assert!(names.len() >= 30);
        let mut wrong = Vec::new();
        for (name, opencv) in names.iter().zip(expected.chunks_exact(784)) {
            let bytes = std::fs::read(format!("{FIXTURES}/images/{name}")).unwrap();
            let grey = decode(&bytes, 1 << 30).unwrap_or_else(|e| panic!("{name}: {e}"));
            let ours = resize_linear(&grey, 28, 28);
            if ours.pixels != opencv {
                wrong.push(format!("{name}: {:?}", differences(&ours.pixels, opencv)));
            }
        }
        assert!(wrong.is_empty(), "{} of {} differ from OpenCV:\n{}", wrong.len(), names.len(), wrong.join("\n"));
    }

    #[test]
    fn the_input_is_each_byte_divided_by_255_in_f32() {
        let grey = GreyU8 { width: 28, height: 28, pixels: (0..784).map(|i| (i % 256) as u8).collect() };
        let input = handler_input(&grey, 28, 28);
        for (&v, &b) in input.iter().zip(&grey.pixels) {
            assert_eq!(v.to_bits(), (b as f32 / 255.0).to_bits());
        }
        // Division, not multiplication by the reciprocal: they differ for some bytes.
        assert!((0..=255u8).any(|b| b as f32 / 255.0 != b as f32 * (1.0 / 255.0)));
    }

    #[test]
    fn hostile_bytes_are_refused_with_a_reason() {
        let png = std::fs::read(format!("{FIXTURES}/images/7.png")).unwrap();
        let jpeg = std::fs::read(format!("{FIXTURES}/images/7.jpg")).unwrap();
        for bad in [&b""[..], b"hello", &png[..png.len() / 2], &jpeg[..40], b"P5 0 0 255\n", b"P5 3 3 255\n\x01"] {
            assert!(decode(bad, 1 << 30).is_err(), "{bad:?}");
        }
        assert!(decode(&png, 28 * 28 - 1).unwrap_err().contains("more than the limit"));
        assert!(decode(&jpeg, 28 * 28 - 1).unwrap_err().contains("more than the limit"));
        assert!(decode(&jpeg, 28 * 28).is_ok());
    }
}
