//! Turning an image file's bytes (PNG, JPEG, PGM/PPM/PBM) into the model's input: greyscale
//! values in [0, 1], resized like the sample's MXNet Model Server handler, or MNIST-style.
//! Decoding refuses images whose header claims more than a pixel limit, before decoding them.
//! opencv.rs holds the sample handler's exact (OpenCV) path that `mnist serve` uses.
//! Leaves out file I/O and the model; pure functions of their inputs that never panic.

pub mod opencv;

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageReader, Limits, Luma};

/// The resampling filter: bilinear when enlarging; when shrinking its support widens with the
/// scale, so every source pixel counts (an area average, no aliasing of thin strokes).
const FILTER: FilterType = FilterType::Triangle;

/// In --mnist-style, pixels at least this bright (after levels are stretched to [0, 1]) are ink.
const INK_THRESHOLD: f32 = 0.3;

/// Below this contrast between the background and the brightest pixel, nothing is drawn.
const MIN_CONTRAST: f32 = 0.05;

/// A greyscale image, row by row, values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Grey {
    width: usize,
    height: usize,
    pixels: Vec<f32>, // (height, width)
}

impl Grey {
    /// None unless `pixels` holds exactly `width` x `height` values, both positive.
    pub fn new(width: usize, height: usize, pixels: Vec<f32>) -> Option<Grey> {
        let ok = width > 0 && height > 0 && width.checked_mul(height) == Some(pixels.len());
        ok.then_some(Grey { width, height, pixels })
    }

    fn blank(width: usize, height: usize) -> Grey {
        Grey { width, height, pixels: vec![0.0; width * height] }
    }

    fn mean(&self) -> f32 {
        self.pixels.iter().sum::<f32>() / self.pixels.len() as f32
    }
}

/// Images whose header claims more pixels than this are refused before decoding (a forged
/// header or a decompression bomb): 40 megapixels, e.g. 8000 x 5000.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// Err unless a `width` x `height` image has at most `max_pixels` pixels.
fn check_pixels(width: u64, height: u64, max_pixels: u64) -> Result<(), String> {
    match width.checked_mul(height) {
        Some(pixels) if pixels <= max_pixels => Ok(()),
        _ => Err(format!("its header claims {width}x{height} pixels, more than the limit of {max_pixels}")),
    }
}

/// Decodes an image (format told by its content, not its name) into greyscale, with EXIF
/// orientation applied and transparency composited (see `composite`); at most
/// `DEFAULT_MAX_PIXELS` pixels.
pub fn decode(bytes: &[u8]) -> Result<Grey, String> {
    decode_limited(bytes, DEFAULT_MAX_PIXELS)
}

/// `decode` refusing images of more than `max_pixels` pixels before decoding them.
pub fn decode_limited(bytes: &[u8], max_pixels: u64) -> Result<Grey, String> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("it is not a PNG, JPEG or PNM (PGM, PPM, PBM) image".into());
    }
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions();
    check_pixels(width.into(), height.into(), max_pixels)?;
    // The default limits (512 MiB) keep a forged header from allocating without bound.
    Limits::default().reserve(decoder.total_bytes()).map_err(|e| e.to_string())?;
    let orientation = decoder.orientation().map_err(|e| e.to_string())?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    image.apply_orientation(orientation);
    to_grey(&image).ok_or_else(|| "it has no pixels".into())
}

/// Luma (ITU-R BT.601 weights, as JPEG and OpenCV's greyscale decoding use) of any image, 8 or
/// 16 bits, grey or colour, with alpha composited. None for an image without pixels.
pub fn to_grey(image: &DynamicImage) -> Option<Grey> {
    const U8: f32 = 1.0 / 255.0; // the same scaling as the training data's
    const U16: f32 = 1.0 / 65535.0;
    let (luma, alpha) = match image {
        DynamicImage::ImageLuma8(b) => planes(b.as_raw(), 1, U8),
        DynamicImage::ImageLumaA8(b) => planes(b.as_raw(), 2, U8),
        DynamicImage::ImageRgb8(b) => planes(b.as_raw(), 3, U8),
        DynamicImage::ImageRgba8(b) => planes(b.as_raw(), 4, U8),
        DynamicImage::ImageLuma16(b) => planes(b.as_raw(), 1, U16),
        DynamicImage::ImageLumaA16(b) => planes(b.as_raw(), 2, U16),
        DynamicImage::ImageRgb16(b) => planes(b.as_raw(), 3, U16),
        DynamicImage::ImageRgba16(b) => planes(b.as_raw(), 4, U16),
        other => planes(other.to_rgba32f().as_raw(), 4, 1.0),
    };
    let pixels = match alpha {
        Some(alpha) => composite(&luma, &alpha),
        None => luma,
    };
    Grey::new(image.width() as usize, image.height() as usize, pixels)
}

/// Splits interleaved samples (grey, grey+alpha, RGB or RGBA) into luma and alpha planes.
fn planes<S: Copy + Into<f32>>(samples: &[S], channels: usize, scale: f32) -> (Vec<f32>, Option<Vec<f32>>) {
    let value = |s: S| {
        let v = s.into() * scale;
        if v.is_nan() {
            0.0
        } else {
            v.clamp(0.0, 1.0)
        }
    };
    let pixels = samples.chunks_exact(channels);
    // r + 0.587 (g - r) + 0.114 (b - r) is 0.299 r + 0.587 g + 0.114 b, and exactly r for a grey
    // pixel, so a grey image stored as RGB gives the same input as stored as grey.
    let luma = pixels
        .clone()
        .map(|p| match *p {
            [y] | [y, _] => value(y),
            [r, g, b, ..] => {
                let (r, g, b) = (value(r), value(g), value(b));
                r + 0.587 * (g - r) + 0.114 * (b - r)
            }
            _ => 0.0,
        })
        .collect();
    let alpha = (channels == 2 || channels == 4).then(|| pixels.map(|p| value(p[channels - 1])).collect());
    (luma, alpha)
}

/// Composites a transparent image onto a background that contrasts with its drawing: white
/// when the opaque pixels are dark on average (black ink on a transparent canvas), black when
/// they are light (white ink, as MNIST draws). The drawing then stays visible either way, and
/// its polarity is settled like an opaque image's (see `mnist_style`). Opaque pixels are kept
/// exactly; a fully transparent image is blank (black).
pub fn composite(luma: &[f32], alpha: &[f32]) -> Vec<f32> {
    let weight: f64 = alpha.iter().map(|&a| a as f64).sum();
    let ink: f64 = luma.iter().zip(alpha).map(|(&l, &a)| (l * a) as f64).sum();
    let background = if weight > 0.0 && ink / weight < 0.5 { 1.0 } else { 0.0 };
    luma.iter().zip(alpha).map(|(&l, &a)| if a >= 1.0 { l } else { a * l + (1.0 - a) * background }).collect()
}

/// Resamples to `width` x `height` (aspect ratio not kept) with `FILTER`.
pub fn resize(grey: &Grey, width: usize, height: usize) -> Grey {
    if (grey.width, grey.height) == (width, height) {
        return grey.clone();
    }
    let (Ok(w), Ok(h)) = (u32::try_from(grey.width), u32::try_from(grey.height)) else {
        return Grey::blank(width, height); // beyond any decodable image
    };
    let Some(source) = ImageBuffer::<Luma<f32>, _>::from_raw(w, h, grey.pixels.as_slice()) else {
        return Grey::blank(width, height); // Grey::new rules this out
    };
    let resized = imageops::resize(&source, width as u32, height as u32, FILTER);
    Grey { width, height, pixels: resized.into_raw() }
}

/// What the sample's inference handler does (greyscale, resize to the input size, / 255):
/// the image is used as it is, so it should be white on black like MNIST.
pub fn standard(grey: &Grey, width: usize, height: usize) -> Vec<f32> {
    resize(grey, width, height).pixels
}

/// The mean of the outer ring (1/16 of the shorter side thick, at least one pixel).
pub fn border_mean(grey: &Grey) -> f32 {
    let (w, h) = (grey.width, grey.height);
    let t = (w.min(h) / 16).max(1);
    let (mut sum, mut count) = (0.0f64, 0usize);
    for (i, &v) in grey.pixels.iter().enumerate() {
        let (x, y) = (i % w, i / w);
        if x < t || y < t || x + t >= w || y + t >= h {
            sum += v as f64;
            count += 1;
        }
    }
    (sum / count.max(1) as f64) as f32
}

/// Dark ink on a light background: the border is brighter than the image as a whole.
pub fn is_dark_on_light(grey: &Grey) -> bool {
    border_mean(grey) > grey.mean()
}

/// The smallest box (x0, y0, x1, y1), ends exclusive, holding every pixel >= `threshold`.
pub fn ink_box(grey: &Grey, threshold: f32) -> Option<(usize, usize, usize, usize)> {
    let mut found: Option<(usize, usize, usize, usize)> = None;
    for (i, _) in grey.pixels.iter().enumerate().filter(|&(_, &v)| v >= threshold) {
        let (x, y) = (i % grey.width, i / grey.width);
        found = Some(match found {
            None => (x, y, x + 1, y + 1),
            Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1)),
        });
    }
    found
}

/// The brightness-weighted mean position (x, y) of the pixel centres; None for a black image.
pub fn centre_of_mass(grey: &Grey) -> Option<(f32, f32)> {
    let (mut mass, mut sx, mut sy) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in grey.pixels.iter().enumerate() {
        let (x, y) = ((i % grey.width) as f64 + 0.5, (i / grey.width) as f64 + 0.5);
        mass += v as f64;
        sx += v as f64 * x;
        sy += v as f64 * y;
    }
    (mass > 0.0).then(|| ((sx / mass) as f32, (sy / mass) as f32))
}

fn crop(grey: &Grey, (x0, y0, x1, y1): (usize, usize, usize, usize)) -> Grey {
    let pixels = (y0..y1).flat_map(|y| grey.pixels[y * grey.width + x0..y * grey.width + x1].iter().copied()).collect();
    Grey { width: x1 - x0, height: y1 - y0, pixels }
}

/// As MNIST's digits were made: white ink on black (inverted if the image is dark on light),
/// levels stretched so the background is 0 and the brightest ink 1, cropped to the ink, scaled
/// to fit a box of 20/28 of the input size (20x20 for 28x28) keeping the aspect ratio, and
/// placed so that its centre of mass is the centre. An image without ink gives a black input.
pub fn mnist_style(grey: &Grey, width: usize, height: usize) -> Vec<f32> {
    let mut grey = grey.clone();
    if is_dark_on_light(&grey) {
        grey.pixels.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    mnist_style_light_on_dark(grey, width, height)
}

/// `mnist_style` for an image known to be light ink on dark (the app's drawing pad), so a
/// stroke along the border is never mistaken for a light background.
pub fn mnist_style_light_on_dark(mut grey: Grey, width: usize, height: usize) -> Vec<f32> {
    let background = border_mean(&grey);
    let peak = grey.pixels.iter().copied().fold(0.0f32, f32::max);
    if peak - background < MIN_CONTRAST {
        return Grey::blank(width, height).pixels;
    }
    grey.pixels.iter_mut().for_each(|v| *v = ((*v - background) / (peak - background)).clamp(0.0, 1.0));
    let Some(ink) = ink_box(&grey, INK_THRESHOLD) else {
        return Grey::blank(width, height).pixels;
    };
    let digit = crop(&grey, ink);
    // Scale so the longer side just fits the box; at least one pixel each way.
    let (box_w, box_h) = ((width * 5).div_ceil(7) as f64, (height * 5).div_ceil(7) as f64);
    let scale = (box_w / digit.width as f64).min(box_h / digit.height as f64);
    let fit = |side: usize, limit: f64| ((side as f64 * scale).round().min(limit) as usize).max(1);
    let digit = resize(&digit, fit(digit.width, box_w), fit(digit.height, box_h));
    let (cx, cy) = centre_of_mass(&digit).unwrap_or((digit.width as f32 / 2.0, digit.height as f32 / 2.0));
    // Where the digit's top-left corner goes so its centre of mass lands on the centre.
    let left = (width as f32 / 2.0 - cx).round() as isize;
    let top = (height as f32 / 2.0 - cy).round() as isize;
    let mut out = Grey::blank(width, height);
    for y in 0..digit.height {
        for x in 0..digit.width {
            let (tx, ty) = (x as isize + left, y as isize + top);
            if (0..width as isize).contains(&tx) && (0..height as isize).contains(&ty) {
                out.pixels[ty as usize * width + tx as usize] = digit.pixels[y * digit.width + x];
            }
        }
    }
    out.pixels
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Rgba, RgbaImage};

    /// A canvas with a filled rectangle of `ink` on `background` (x, y, width, height).
    fn canvas(width: usize, height: usize, rect: (usize, usize, usize, usize), ink: f32, background: f32) -> Grey {
        let (rx, ry, rw, rh) = rect;
        let pixels = (0..width * height)
            .map(|i| {
                let (x, y) = (i % width, i / width);
                if (rx..rx + rw).contains(&x) && (ry..ry + rh).contains(&y) {
                    ink
                } else {
                    background
                }
            })
            .collect();
        Grey::new(width, height, pixels).unwrap()
    }

    fn as_grey(pixels: Vec<f32>, width: usize, height: usize) -> Grey {
        Grey::new(width, height, pixels).unwrap()
    }

    fn encode(image: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn an_offset_blob_on_a_large_canvas_ends_up_centred_by_mass_and_20_pixels_tall() {
        // A 30x60 blob (taller than wide) near the bottom-right of a 400x300 canvas.
        let grey = canvas(400, 300, (330, 220, 30, 60), 1.0, 0.0);
        let out = as_grey(mnist_style(&grey, 28, 28), 28, 28);
        let (cx, cy) = centre_of_mass(&out).unwrap();
        assert!((cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5, "centre of mass ({cx}, {cy})");
        let (x0, y0, x1, y1) = ink_box(&out, 0.5).unwrap();
        assert_eq!(y1 - y0, 20, "the longer side fills the 20-pixel box");
        assert_eq!(x1 - x0, 10, "the aspect ratio is kept");
    }

    #[test]
    fn dark_on_light_is_detected_and_inverted() {
        let dark_on_light = canvas(50, 40, (20, 10, 8, 20), 0.1, 0.9);
        let light_on_dark = canvas(50, 40, (20, 10, 8, 20), 0.9, 0.1);
        assert!(is_dark_on_light(&dark_on_light));
        assert!(!is_dark_on_light(&light_on_dark));
        // Both polarities give the same MNIST-style input: white ink, black background.
        let a = mnist_style(&dark_on_light, 28, 28);
        let b = mnist_style(&light_on_dark, 28, 28);
        assert_eq!(a, b);
        assert_eq!(a[0], 0.0);
        assert!(a.iter().copied().fold(0.0, f32::max) > 0.99);
        // A uniform image is neither, and has no ink.
        let flat = canvas(10, 10, (0, 0, 0, 0), 0.0, 0.7);
        assert!(!is_dark_on_light(&flat));
        assert!(mnist_style(&flat, 28, 28).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn black_ink_on_a_transparent_canvas_becomes_ink() {
        // Black strokes, transparent background (its colour black too, as editors often save).
        let mut rgba = RgbaImage::new(40, 40);
        for (x, y, p) in rgba.enumerate_pixels_mut() {
            *p = if (15..25).contains(&x) && (5..35).contains(&y) { Rgba([0, 0, 0, 255]) } else { Rgba([0, 0, 0, 0]) };
        }
        let grey = to_grey(&DynamicImage::ImageRgba8(rgba)).unwrap();
        assert_eq!(grey.pixels[0], 1.0, "the transparent background contrasts with the black ink");
        assert_eq!(grey.pixels[20 * 40 + 20], 0.0, "opaque ink is kept");
        let out = mnist_style(&grey, 28, 28);
        assert_eq!(out[0], 0.0);
        assert!(out[14 * 28 + 14] > 0.99, "the ink is white in the middle");

        // White ink on a transparent canvas goes onto black, as MNIST has it.
        assert_eq!(composite(&[1.0, 0.0], &[1.0, 0.0]), [1.0, 0.0]);
        // Half-transparent black ink over the white background is mid-grey.
        assert_eq!(composite(&[0.0, 0.0], &[0.5, 0.0]), [0.5, 1.0]);
        // Nothing opaque at all: a blank image.
        assert_eq!(composite(&[0.3, 0.8], &[0.0, 0.0]), [0.0, 0.0]);
    }

    #[test]
    fn grey_stored_as_rgb_or_16_bits_gives_the_same_values() {
        let grey8 = GrayImage::from_fn(5, 3, |x, y| Luma([(x * 50 + y * 7) as u8]));
        let expected: Vec<f32> = grey8.as_raw().iter().map(|&v| v as f32 * (1.0 / 255.0)).collect();
        let from8 = to_grey(&DynamicImage::ImageLuma8(grey8.clone())).unwrap();
        assert_eq!(from8.pixels, expected, "8-bit grey is scaled exactly like the training data");
        let rgb = to_grey(&DynamicImage::ImageLuma8(grey8.clone()).to_rgb8().into()).unwrap();
        assert_eq!(rgb.pixels, expected, "a grey pixel's luma is its value");
        let opaque = to_grey(&DynamicImage::ImageLuma8(grey8.clone()).to_rgba8().into()).unwrap();
        assert_eq!(opaque.pixels, expected, "opaque alpha changes nothing");
        let wide = to_grey(&DynamicImage::ImageLuma8(grey8).to_luma16().into()).unwrap();
        for (a, b) in wide.pixels.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6, "{a} {b}");
        }
        // Pure colours weigh as BT.601 says.
        let red = image::RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 0]));
        assert!((to_grey(&red.into()).unwrap().pixels[0] - 0.299).abs() < 1e-6);
    }

    #[test]
    fn odd_sizes_never_panic_and_give_the_input_size() {
        for (w, h) in [(1, 1), (1000, 3), (3, 1000), (2, 1), (28, 28), (29, 27)] {
            for pixels in [vec![0.0; w * h], vec![1.0; w * h], (0..w * h).map(|i| (i % 7) as f32 / 6.0).collect()] {
                let grey = Grey::new(w, h, pixels).unwrap();
                assert_eq!(standard(&grey, 28, 28).len(), 784, "{w}x{h}");
                let out = mnist_style(&grey, 28, 28);
                assert_eq!(out.len(), 784, "{w}x{h}");
                assert!(out.iter().all(|v| (0.0..=1.0).contains(v)), "{w}x{h}");
            }
        }
        assert!(Grey::new(0, 5, vec![]).is_none());
    }

    #[test]
    fn a_28x28_image_is_used_unchanged_by_the_standard_preprocessing() {
        let grey = as_grey((0..784).map(|i| (i % 255) as f32 / 255.0).collect(), 28, 28);
        assert_eq!(standard(&grey, 28, 28), grey.pixels);
        // Enlarging a uniform image keeps it uniform; shrinking averages.
        let two = as_grey(vec![0.0, 1.0, 0.0, 1.0], 2, 2);
        let half = resize(&as_grey((0..16).map(|i| (i % 2) as f32).collect(), 4, 4), 2, 2);
        assert!(half.pixels.iter().all(|v| (v - 0.5).abs() < 0.2), "{:?}", half.pixels);
        assert!(resize(&as_grey(vec![0.25], 1, 1), 28, 28).pixels.iter().all(|&v| (v - 0.25).abs() < 1e-6));
        assert_eq!(resize(&two, 2, 2), two);
    }

    #[test]
    fn a_header_claiming_too_many_pixels_is_refused_before_decoding() {
        // A 6x4 PNG claims 24 pixels: within a limit of 24, over one of 23.
        let png = encode(DynamicImage::ImageLuma8(GrayImage::new(6, 4)), image::ImageFormat::Png);
        assert!(decode_limited(&png, 24).is_ok());
        assert_eq!(decode_limited(&png, 23).unwrap_err(), "its header claims 6x4 pixels, more than the limit of 23");
        // A PGM header claiming 60000 x 60000 with no pixels: refused by the default limit at
        // once, without allocating 3.6 GB.
        let bomb = b"P5 60000 60000 255\n\x00";
        let started = std::time::Instant::now();
        assert!(decode(bomb).unwrap_err().contains("more than the limit of 40000000"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn decode_reads_png_jpeg_and_pnm_and_refuses_the_rest() {
        let grey8 = GrayImage::from_fn(6, 4, |x, y| Luma([(x * 40 + y) as u8]));
        let expected: Vec<f32> = grey8.as_raw().iter().map(|&v| v as f32 * (1.0 / 255.0)).collect();
        let png = encode(DynamicImage::ImageLuma8(grey8.clone()), image::ImageFormat::Png);
        assert_eq!(decode(&png).unwrap().pixels, expected);
        let mut p2 = String::from("P2\n# a comment\n6 4\n255\n");
        for v in grey8.as_raw() {
            p2.push_str(&format!("{v} "));
        }
        assert_eq!(decode(p2.as_bytes()).unwrap().pixels, expected);
        let mut p5 = b"P5 6 4 255\n".to_vec();
        p5.extend_from_slice(grey8.as_raw());
        assert_eq!(decode(&p5).unwrap().pixels, expected);
        let jpeg = encode(DynamicImage::ImageLuma8(grey8).to_rgb8().into(), image::ImageFormat::Jpeg);
        let from_jpeg = decode(&jpeg).unwrap();
        assert_eq!((from_jpeg.width, from_jpeg.height), (6, 4));
        for bad in [&b""[..], b"hello, world", b"\x89PNG\r\n\x1a\n truncated", &png[..png.len() / 2], b"P5 0 0 255\n"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
