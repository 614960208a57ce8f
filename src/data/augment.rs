//! Training augmentation and normalisation (docs/computation.md, Data), written straight into an
//! f32 NCHW buffer: zero-pad by `pad` pixels, crop back to H×W at a random offset, flip
//! horizontally with probability 1/2, then `(x/255 - mean) / std` per channel.
//!
//! As in the torchvision pipeline the reference code uses (`RandomCrop(32, padding=4)`,
//! `RandomHorizontalFlip`, `ToTensor`, `Normalize`), padding is a raw pixel value of 0, so a
//! padded pixel comes out as `-mean/std` after normalisation.

use crate::rng::Rng;

/// One example's augmentation: the crop's top-left corner in the padded image (each in
/// `0..=2*pad`) and whether to mirror the crop left-right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropFlip {
    /// Row of the crop's top edge in the padded image.
    pub dy: usize,
    /// Column of the crop's left edge in the padded image.
    pub dx: usize,
    /// Mirror left-right after cropping.
    pub flip: bool,
}

impl CropFlip {
    /// The crop that returns the original image unchanged (`dy = dx = pad`, no flip).
    pub fn identity(pad: usize) -> CropFlip {
        CropFlip {
            dy: pad,
            dx: pad,
            flip: false,
        }
    }

    /// Draws a uniform crop offset in `0..=2*pad` for each axis and, if `flip` is enabled, a
    /// fair coin for the mirror (three draws from `rng` whatever the arguments, so the stream
    /// stays aligned).
    pub fn sample(rng: &mut Rng, pad: usize, flip: bool) -> CropFlip {
        let span = 2 * pad as u64 + 1;
        let dy = rng.below(span) as usize;
        let dx = rng.below(span) as usize;
        let coin = rng.next_u64() >> 63 == 1;
        CropFlip {
            dy,
            dx,
            flip: flip && coin,
        }
    }
}

/// Per-channel lookup tables from raw byte to normalised value `(v/255 - mean) / std`.
#[derive(Clone, Debug)]
pub struct Normalizer {
    luts: Vec<[f32; 256]>,
}

impl Normalizer {
    /// Tables for the given per-channel means and standard deviations (pixels in [0, 1]).
    pub fn new(mean: &[f32], std: &[f32]) -> Normalizer {
        assert_eq!(mean.len(), std.len(), "mean and std lengths differ");
        let luts = mean
            .iter()
            .zip(std)
            .map(|(&m, &s)| std::array::from_fn(|v| (v as f32 / 255.0 - m) / s))
            .collect();
        Normalizer { luts }
    }

    /// The normalised value of raw byte `v` in channel `c`.
    pub fn value(&self, c: usize, v: u8) -> f32 {
        self.luts[c][usize::from(v)]
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.luts.len()
    }
}

/// Normalises one C×H×W byte image into `dst` (same length) without augmentation.
pub fn normalize_into(src: &[u8], norm: &Normalizer, dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "normalize_into: src vs dst length");
    let plane = src.len() / norm.channels();
    for (c, (s, d)) in src
        .chunks_exact(plane)
        .zip(dst.chunks_exact_mut(plane))
        .enumerate()
    {
        let lut = &norm.luts[c];
        for (o, &v) in d.iter_mut().zip(s) {
            *o = lut[usize::from(v)];
        }
    }
}

/// Crops (from the image zero-padded by `pad`), optionally flips, and normalises one
/// C×H×W byte image into `dst` (C×H×W f32). Output pixel `(c, y, x)` is padded-image pixel
/// `(c, y + dy, x' + dx)` with `x' = W-1-x` when flipping, else `x`.
pub fn augment_into(
    src: &[u8],
    height: usize,
    width: usize,
    pad: usize,
    cf: CropFlip,
    norm: &Normalizer,
    dst: &mut [f32],
) {
    let (h, w) = (height, width);
    assert_eq!(
        src.len(),
        norm.channels() * h * w,
        "augment_into: src length"
    );
    assert_eq!(src.len(), dst.len(), "augment_into: src vs dst length");
    // Source column of crop column xc is xc + shift; valid where 0 <= xc + shift < w.
    let shift = cf.dx as isize - pad as isize;
    let x0 = (-shift).clamp(0, w as isize) as usize;
    let x1 = ((w as isize - shift).clamp(0, w as isize) as usize).max(x0);
    let row_shift = cf.dy as isize - pad as isize;
    for (c, (s, d)) in src
        .chunks_exact(h * w)
        .zip(dst.chunks_exact_mut(h * w))
        .enumerate()
    {
        let lut = &norm.luts[c];
        let zero = lut[0];
        for (y, out) in d.chunks_exact_mut(w).enumerate() {
            let sy = y as isize + row_shift;
            if sy < 0 || sy >= h as isize {
                out.fill(zero);
                continue;
            }
            let srow = &s[sy as usize * w..(sy as usize + 1) * w];
            out[..x0].fill(zero);
            for (o, &v) in out[x0..x1]
                .iter_mut()
                .zip(&srow[(x0 as isize + shift) as usize..])
            {
                *o = lut[usize::from(v)];
            }
            out[x1..].fill(zero);
            if cf.flip {
                out.reverse();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_equals_normalize() {
        let src: Vec<u8> = (0..2 * 5 * 4).map(|v| (v * 7) as u8).collect();
        let norm = Normalizer::new(&[0.1, 0.7], &[0.3, 0.2]);
        let (mut a, mut b) = (vec![0.0; 40], vec![0.0; 40]);
        normalize_into(&src, &norm, &mut a);
        augment_into(&src, 5, 4, 4, CropFlip::identity(4), &norm, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn extreme_crops_are_mostly_padding() {
        // Shifting by the full 2*pad of a 3-wide image leaves nothing of the source.
        let src = vec![200u8; 9];
        let norm = Normalizer::new(&[0.0], &[1.0]);
        let mut out = vec![1.0; 9];
        let cf = CropFlip {
            dy: 8,
            dx: 8,
            flip: true,
        };
        augment_into(&src, 3, 3, 4, cf, &norm, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn sample_covers_range_and_flips_half() {
        let mut rng = Rng::new(5);
        let mut flips = 0;
        let mut seen = [false; 9];
        for _ in 0..4000 {
            let cf = CropFlip::sample(&mut rng, 4, true);
            assert!(cf.dy <= 8 && cf.dx <= 8);
            seen[cf.dx] = true;
            flips += cf.flip as usize;
        }
        assert!(seen.iter().all(|&s| s));
        assert!((1800..2200).contains(&flips), "{flips}");
        assert!((0..100).all(|_| !CropFlip::sample(&mut rng, 4, false).flip));
    }
}
