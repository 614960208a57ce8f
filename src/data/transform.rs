//! The standard ImageNet transforms of torchvision's reference recipe, on decoded RGB images:
//!
//! - training: `RandomResizedCrop(S)` (scale 0.08–1, aspect ratio 3/4–4/3, ten attempts then a
//!   centre crop of the clamped aspect ratio) and `RandomHorizontalFlip()`;
//! - evaluation: `Resize(R)` of the shorter side to `R = ⌊S·256/224⌋` (256 for S = 224), then
//!   `CenterCrop(S)`;
//!
//! then `ToTensor` + `Normalize` with the ImageNet mean and standard deviation into a C×S×S f32
//! buffer. Resampling is [`super::resize`]'s antialiased bilinear filter.

use super::augment::Normalizer;
use super::jpeg::Rgb;
use super::resize::{resize_window, Rect};
use crate::rng::Rng;

/// Per-channel (R, G, B) mean of ImageNet pixels scaled to [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Per-channel (R, G, B) standard deviation of ImageNet pixels scaled to [0, 1].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Scale range of the random crop's area, as a fraction of the image's.
pub const CROP_SCALE: (f64, f64) = (0.08, 1.0);
/// Aspect-ratio (width / height) range of the random crop.
pub const CROP_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
/// Random crops tried before falling back to the centre crop.
pub const CROP_ATTEMPTS: usize = 10;

/// The evaluation resize of the shorter side for crop size `size`: `⌊size · 256 / 224⌋`.
pub fn eval_resize(size: usize) -> usize {
    size * 256 / 224
}

/// Python's `round` (half to even), which torchvision's crop arithmetic uses.
fn round_half_even(v: f64) -> usize {
    v.round_ties_even().max(0.0) as usize
}

/// One training example's augmentation: the crop rectangle in the source image and the flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainCrop {
    /// The rectangle cropped out of the source image (then resized to S×S).
    pub rect: Rect,
    /// Mirror the result left-right.
    pub flip: bool,
}

impl TrainCrop {
    /// Draws the crop of a `width × height` image (torchvision's `RandomResizedCrop.get_params`)
    /// and, when `flip` is enabled, a fair coin for the mirror. The coin is drawn first and
    /// always, so the stream does not depend on `flip`.
    pub fn sample(rng: &mut Rng, width: usize, height: usize, flip: bool) -> TrainCrop {
        let coin = rng.next_u64() >> 63 == 1;
        TrainCrop {
            rect: random_resized_crop(rng, width, height),
            flip: flip && coin,
        }
    }
}

/// torchvision's `RandomResizedCrop.get_params`: up to [`CROP_ATTEMPTS`] draws of an area
/// fraction in [`CROP_SCALE`] and a log-uniform aspect ratio in [`CROP_RATIO`]; the first
/// that fits inside the image is placed uniformly. Otherwise the whole image, cropped
/// centrally to the nearest allowed aspect ratio.
pub fn random_resized_crop(rng: &mut Rng, width: usize, height: usize) -> Rect {
    let area = (width * height) as f64;
    let (lr0, lr1) = (CROP_RATIO.0.ln(), CROP_RATIO.1.ln());
    for _ in 0..CROP_ATTEMPTS {
        let target = area * (CROP_SCALE.0 + (CROP_SCALE.1 - CROP_SCALE.0) * rng.uniform_f64());
        let aspect = (lr0 + (lr1 - lr0) * rng.uniform_f64()).exp();
        let w = round_half_even((target * aspect).sqrt());
        let h = round_half_even((target / aspect).sqrt());
        if 0 < w && w <= width && 0 < h && h <= height {
            let y = rng.below((height - h + 1) as u64) as usize;
            let x = rng.below((width - w + 1) as u64) as usize;
            return Rect { x, y, w, h };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < CROP_RATIO.0 {
        (
            width,
            round_half_even(width as f64 / CROP_RATIO.0).min(height),
        )
    } else if in_ratio > CROP_RATIO.1 {
        (
            round_half_even(height as f64 * CROP_RATIO.1).min(width),
            height,
        )
    } else {
        (width, height)
    };
    Rect {
        x: (width - w) / 2,
        y: (height - h) / 2,
        w,
        h,
    }
}

/// The evaluation geometry of a `width × height` image for crop size `size`: the resized
/// image's `(width, height)` (shorter side [`eval_resize`], longer side scaled and floored,
/// as torchvision's `Resize(int)`) and the centred `size × size` window in it.
pub fn eval_geometry(width: usize, height: usize, size: usize) -> (usize, usize, Rect) {
    let r = eval_resize(size);
    let (ow, oh) = if width <= height {
        (r, r * height / width)
    } else {
        (r * width / height, r)
    };
    let window = Rect {
        x: round_half_even((ow - size) as f64 / 2.0),
        y: round_half_even((oh - size) as f64 / 2.0),
        w: size,
        h: size,
    };
    (ow, oh, window)
}

/// Writes an interleaved `size × size` RGB image into `out` (3×size×size f32, channel
/// planes), normalised by `norm` and mirrored left-right when `flip`.
pub fn to_chw(rgb: &[u8], size: usize, flip: bool, norm: &Normalizer, out: &mut [f32]) {
    assert_eq!(rgb.len(), 3 * size * size, "to_chw: source length");
    assert_eq!(out.len(), 3 * size * size, "to_chw: output length");
    for (c, plane) in out.chunks_exact_mut(size * size).enumerate() {
        for (y, row) in plane.chunks_exact_mut(size).enumerate() {
            let src = &rgb[y * size * 3..(y + 1) * size * 3];
            for (x, o) in row.iter_mut().enumerate() {
                let sx = if flip { size - 1 - x } else { x };
                *o = norm.value(c, src[sx * 3 + c]);
            }
        }
    }
}

/// The training transform of `img` with the drawn `crop` into `out` (3×size×size).
pub fn train_into(img: &Rgb, crop: TrainCrop, size: usize, norm: &Normalizer, out: &mut [f32]) {
    let full = Rect {
        x: 0,
        y: 0,
        w: size,
        h: size,
    };
    let px = resize_window(&img.pixels, img.width, crop.rect, size, size, full);
    to_chw(&px, size, crop.flip, norm, out);
}

/// The evaluation transform of `img` (resize + centre crop) into `out` (3×size×size).
pub fn eval_into(img: &Rgb, size: usize, norm: &Normalizer, out: &mut [f32]) {
    let (ow, oh, window) = eval_geometry(img.width, img.height, size);
    let whole = Rect {
        x: 0,
        y: 0,
        w: img.width,
        h: img.height,
    };
    let px = resize_window(&img.pixels, img.width, whole, ow, oh, window);
    to_chw(&px, size, false, norm, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_geometry_of_imagenet_sizes() {
        // 500×375 landscape: shorter side 375 → 256, longer ⌊256·500/375⌋ = 341.
        let (w, h, win) = eval_geometry(500, 375, 224);
        assert_eq!((w, h), (341, 256));
        // (341 − 224) / 2 = 58.5 → 58 (half to even); (256 − 224) / 2 = 16.
        assert_eq!((win.x, win.y, win.w, win.h), (58, 16, 224, 224));
        let (w, h, win) = eval_geometry(40, 64, 32);
        assert_eq!((w, h), (36, 57)); // R = ⌊32·256/224⌋ = 36, ⌊36·64/40⌋ = 57
        assert_eq!((win.x, win.y), (2, 12)); // 2, 12.5 → 12
    }

    #[test]
    fn random_crops_respect_bounds() {
        let mut rng = Rng::new(3);
        for &(w, h) in &[(500usize, 375usize), (64, 64), (7, 300), (300, 7), (1, 1)] {
            for _ in 0..500 {
                let r = random_resized_crop(&mut rng, w, h);
                assert!(
                    r.w > 0 && r.h > 0 && r.x + r.w <= w && r.y + r.h <= h,
                    "{r:?}"
                );
                let frac = (r.w * r.h) as f64 / (w * h) as f64;
                let ratio = r.w as f64 / r.h as f64;
                if w >= 64 && h >= 64 {
                    // Rounding moves the area and ratio a little past the nominal range.
                    assert!((0.07..=1.0).contains(&frac), "{frac}");
                    assert!((0.7..=1.4).contains(&ratio), "{ratio}");
                }
            }
        }
    }

    #[test]
    fn fallback_is_central_with_clamped_ratio() {
        // A 1×100 image (aspect ratio 0.01) never fits a random crop.
        let mut rng = Rng::new(9);
        let r = random_resized_crop(&mut rng, 1, 100);
        assert_eq!(r.w, 1);
        // Every attempt needs w ≥ √(0.08·100·3/4) ≈ 2.4 > 1, so this is the fallback:
        // h = round(1 / (3/4)) = 1, centred: y = (100 − 1) / 2 = 49.
        assert_eq!((r.x, r.y, r.h), (0, 49, 1));
    }
}
