//! Antialiased bilinear resampling of 8-bit RGB images, the filter torchvision's transforms use
//! on PIL images (`Image.resize(..., BILINEAR)`): a triangle filter whose support widens with
//! the downscaling factor, applied separably (rows, then columns), each pass rounded back to
//! 8 bits as PIL does.
//!
//! [`resize_window`] resamples a source rectangle to a virtual `out_w × out_h` image and
//! returns only a window of it, so a random-resized crop (rectangle → S×S) and an
//! evaluation resize + centre crop (whole image → shorter side R, keep the central S×S) are
//! the same call and the discarded border is never computed.

/// A rectangle in pixels: left column, top row, width, height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
}

/// The filter taps of one output coordinate: the first input index and one weight per input
/// from there on (weights sum to 1).
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

/// The taps mapping `in_size` inputs onto `out_size` outputs, for the outputs
/// `from..from + count` only (PIL's `precompute_coeffs` with the bilinear filter).
fn taps(in_size: usize, out_size: usize, from: usize, count: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1 input pixel, widened by the scale
    let mut first = Vec::with_capacity(count);
    let mut weights = Vec::with_capacity(count);
    for o in from..from + count {
        let center = (o as f64 + 0.5) * scale;
        let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
        let hi = ((center + support + 0.5).floor() as usize)
            .min(in_size)
            .max(lo + 1);
        let mut w: Vec<f64> = (lo..hi)
            .map(|i| {
                let t = ((i as f64 - center + 0.5) / filter_scale).abs();
                (1.0 - t).max(0.0)
            })
            .collect();
        let sum: f64 = w.iter().sum();
        if sum > 0.0 {
            w.iter_mut().for_each(|v| *v /= sum);
        } else {
            // A single input under a vanishing filter (not reachable for in, out > 0).
            w.iter_mut().for_each(|v| *v = 1.0 / (hi - lo) as f64);
        }
        first.push(lo);
        weights.push(w.into_iter().map(|v| v as f32).collect());
    }
    Taps { first, weights }
}

/// Rounds a filtered value to a byte (PIL's clip-and-round).
fn to_u8(v: f32) -> u8 {
    (v + 0.5).clamp(0.0, 255.0) as u8
}

/// Resamples the rectangle `src_rect` of the `width`-wide interleaved RGB image `src` to a
/// virtual `out_w × out_h` image and returns its `window` (interleaved RGB, `window.h` rows of
/// `window.w` pixels). Pixels outside `src_rect` are never read (the rectangle is cropped
/// first, as torchvision crops before resizing).
pub fn resize_window(
    src: &[u8],
    width: usize,
    src_rect: Rect,
    out_w: usize,
    out_h: usize,
    window: Rect,
) -> Vec<u8> {
    assert!(
        src_rect.w > 0 && src_rect.h > 0,
        "resize of an empty rectangle"
    );
    assert!(
        src_rect.x + src_rect.w <= width,
        "source rectangle past the right edge"
    );
    assert!(
        (src_rect.y + src_rect.h) * width * 3 <= src.len(),
        "source rectangle past the bottom edge"
    );
    assert!(
        window.x + window.w <= out_w && window.y + window.h <= out_h,
        "window outside the output"
    );
    let tx = taps(src_rect.w, out_w, window.x, window.w);
    let ty = taps(src_rect.h, out_h, window.y, window.h);
    // Only the source rows some output row reads.
    let row0 = ty.first.first().copied().unwrap_or(0);
    let row1 = ty
        .first
        .iter()
        .zip(&ty.weights)
        .map(|(f, w)| f + w.len())
        .max()
        .unwrap_or(row0);
    // Horizontal pass: rows row0..row1 of the rectangle → window.w columns.
    let mut tmp = vec![0u8; (row1 - row0) * window.w * 3];
    for (r, out) in (row0..row1).zip(tmp.chunks_exact_mut(window.w * 3)) {
        let line = &src[((src_rect.y + r) * width + src_rect.x) * 3..];
        for ((px, &f), w) in out.chunks_exact_mut(3).zip(&tx.first).zip(&tx.weights) {
            let mut acc = [0.0f32; 3];
            for (k, &wk) in w.iter().enumerate() {
                let p = &line[(f + k) * 3..(f + k) * 3 + 3];
                for c in 0..3 {
                    acc[c] += wk * f32::from(p[c]);
                }
            }
            for c in 0..3 {
                px[c] = to_u8(acc[c]);
            }
        }
    }
    // Vertical pass.
    let stride = window.w * 3;
    let mut out = vec![0u8; window.h * stride];
    for ((line, &f), w) in out.chunks_exact_mut(stride).zip(&ty.first).zip(&ty.weights) {
        let mut acc = vec![0.0f32; stride];
        for (k, &wk) in w.iter().enumerate() {
            let row = &tmp[(f + k - row0) * stride..(f + k - row0 + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += wk * f32::from(v);
            }
        }
        for (o, a) in line.iter_mut().zip(acc) {
            *o = to_u8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(w: usize, h: usize) -> Rect {
        Rect { x: 0, y: 0, w, h }
    }

    #[test]
    fn identity_size_copies() {
        let src: Vec<u8> = (0..5 * 4 * 3).map(|v| (v * 13 % 256) as u8).collect();
        assert_eq!(resize_window(&src, 5, full(5, 4), 5, 4, full(5, 4)), src);
    }

    #[test]
    fn constant_stays_constant() {
        let src = vec![77u8; 37 * 23 * 3];
        let out = resize_window(&src, 37, full(37, 23), 11, 16, full(11, 16));
        assert!(out.iter().all(|&v| v == 77));
    }

    #[test]
    fn halving_averages_pairs() {
        // 4 → 2: output pixel o centres at 2o + 1 with support 2: taps at 2o-1..2o+3 with
        // weights (1/8, 3/8, 3/8, 1/8) inside the image, renormalised at the edges.
        let row = [0u8, 80, 160, 240];
        let src: Vec<u8> = row.iter().flat_map(|&v| [v, v, v]).collect();
        let out = resize_window(&src, 4, full(4, 1), 2, 1, full(2, 1));
        // o = 0: inputs 0, 1, 2 with weights 3/8, 3/8, 1/8 → (0·3 + 80·3 + 160) / 7 = 57.14
        // o = 1: inputs 1, 2, 3 with weights 1/8, 3/8, 3/8 → (80 + 480 + 720) / 7 = 182.86
        assert_eq!(out, vec![57, 57, 57, 183, 183, 183]);
    }

    #[test]
    fn window_equals_crop_of_full_output() {
        let (w, h) = (29, 17);
        let src: Vec<u8> = (0..w * h * 3).map(|v| (v * 7 % 251) as u8).collect();
        let rect = Rect {
            x: 3,
            y: 2,
            w: 20,
            h: 13,
        };
        let all = resize_window(&src, w, rect, 12, 9, full(12, 9));
        let win = Rect {
            x: 2,
            y: 3,
            w: 7,
            h: 5,
        };
        let part = resize_window(&src, w, rect, 12, 9, win);
        for r in 0..win.h {
            let a = &all[((r + win.y) * 12 + win.x) * 3..((r + win.y) * 12 + win.x + win.w) * 3];
            assert_eq!(&part[r * win.w * 3..(r + 1) * win.w * 3], a);
        }
    }
}
