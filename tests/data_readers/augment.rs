//! The augmentation's properties: crop, flip and normalisation on known pixels.

use super::*;

fn ramp_image(c: usize, h: usize, w: usize) -> Vec<u8> {
    (0..c * h * w).map(|i| (i * 7 % 256) as u8).collect()
}

#[test]
fn crop_at_zero_is_padded_shift() {
    let (c, h, w, pad) = (3, 32, 32, 4);
    let src = ramp_image(c, h, w);
    let (mean, std) = DatasetKind::Cifar10.mean_std();
    let norm = Normalizer::new(&mean, &std);
    let mut out = vec![0.0; c * h * w];
    let cf = CropFlip {
        dy: 0,
        dx: 0,
        flip: false,
    };
    augment_into(&src, h, w, pad, cf, &norm, &mut out);
    for ch in 0..c {
        let pad_value = (0.0 - mean[ch]) / std[ch];
        for y in 0..h {
            for x in 0..w {
                let got = out[(ch * h + y) * w + x];
                let want = if y < pad || x < pad {
                    pad_value
                } else {
                    norm.value(ch, src[(ch * h + y - pad) * w + x - pad])
                };
                assert_eq!(got, want, "({ch},{y},{x})");
            }
        }
    }
}

#[test]
fn flip_is_mirror_and_identity_is_normalisation() {
    let (c, h, w, pad) = (1, 6, 5, 2);
    let src = ramp_image(c, h, w);
    let norm = Normalizer::new(&[0.3], &[0.2]);
    for (dy, dx) in [(0, 0), (1, 3), (2, 2), (4, 4)] {
        let mut a = vec![0.0; h * w];
        let mut b = vec![0.0; h * w];
        augment_into(
            &src,
            h,
            w,
            pad,
            CropFlip {
                dy,
                dx,
                flip: false,
            },
            &norm,
            &mut a,
        );
        augment_into(
            &src,
            h,
            w,
            pad,
            CropFlip { dy, dx, flip: true },
            &norm,
            &mut b,
        );
        for y in 0..h {
            for x in 0..w {
                assert_eq!(b[y * w + x], a[y * w + (w - 1 - x)]);
            }
        }
    }
    let mut a = vec![0.0; h * w];
    let mut b = vec![0.0; h * w];
    augment_into(&src, h, w, pad, CropFlip::identity(pad), &norm, &mut a);
    normalize_into(&src, &norm, &mut b);
    assert_eq!(a, b);
}

#[test]
fn normalisation_of_known_pixels() {
    let (mean, std) = DatasetKind::Cifar10.mean_std();
    let norm = Normalizer::new(&mean, &std);
    assert!((norm.value(0, 255) - (1.0 - 0.4914) / 0.2023).abs() < 1e-6);
    assert!((norm.value(2, 0) - (-0.4465 / 0.2010)).abs() < 1e-6);
    let (mean, std) = DatasetKind::FashionMnist.mean_std();
    let norm = Normalizer::new(&mean, &std);
    assert!((norm.value(0, 51) - (0.2 - 0.2860) / 0.3530).abs() < 1e-6);
}

// ---------------------------------------------------------------------------------------
// Loader
// ---------------------------------------------------------------------------------------
