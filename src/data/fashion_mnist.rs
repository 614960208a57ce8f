//! Fashion-MNIST from its gzipped IDX files (Debian package `dataset-fashion-mnist`).
//! The 28×28 gray images are zero-padded to 32×32 (2 pixels a side) at load so every CIFAR
//! model runs unchanged with one input channel (docs/computation.md, Data).

use super::{idx, Dataset, DatasetKind, DirSource, Split};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where the Debian package `dataset-fashion-mnist` installs the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist/";
/// Side of the images in the files.
pub const SOURCE_SIDE: usize = 28;
/// Zero padding added on every side at load.
pub const PAD: usize = 2;
/// Side of the images in the loaded [`Dataset`].
pub const SIDE: usize = SOURCE_SIDE + 2 * PAD;

/// The (images, labels) file names of a split, without the optional `.gz`.
pub fn file_names(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
}

fn install_hint(dir: &Path, source: DirSource) -> String {
    format!(
        "Fashion-MNIST directory {} ({}); install the files with \
         `apt-get install dataset-fashion-mnist` (they go to {DEFAULT_DIR}), or pass \
         --data-dir (or set SUPTICKETS_DATA_DIR) to a directory holding \
         train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz \
         and t10k-labels-idx1-ubyte.gz (uncompressed files without .gz work too)",
        dir.display(),
        source.describe()
    )
}

/// Finds the (images, labels) files of `split` in `dir` or `dir/fashion-mnist/`.
pub fn locate(dir: &Path, source: DirSource, split: Split) -> Result<(PathBuf, PathBuf)> {
    if !dir.is_dir() {
        return Err(Error::data(
            dir,
            format!("no such directory: {}", install_hint(dir, source)),
        ));
    }
    let (img, lbl) = file_names(split);
    for d in [dir.to_path_buf(), dir.join("fashion-mnist")] {
        if let (Some(i), Some(l)) = (idx::find(&d, img), idx::find(&d, lbl)) {
            return Ok((i, l));
        }
    }
    let missing = if idx::find(dir, img).is_none() {
        img
    } else {
        lbl
    };
    Err(Error::data(
        dir.join(format!("{missing}.gz")),
        format!("missing file: {}", install_hint(dir, source)),
    ))
}

/// Loads one split from `dir` (see [`locate`]); `source` only feeds error messages.
pub fn load(dir: &Path, source: DirSource, split: Split) -> Result<Dataset> {
    let (images, labels) = locate(dir, source, split)?;
    let name = match split {
        Split::Train => "fashion-mnist/train",
        Split::Test => "fashion-mnist/test",
    };
    load_files(&images, &labels, name)
}

/// Loads an (images, labels) pair of IDX files: checks 28×28 images, labels < 10 and equal
/// counts, and pads the images to 32×32.
pub fn load_files(images: &Path, labels: &Path, name: &str) -> Result<Dataset> {
    let kind = DatasetKind::FashionMnist;
    let img = idx::read_images(images)?;
    let (n, h, w) = (img.dims[0], img.dims[1], img.dims[2]);
    if (h, w) != (SOURCE_SIDE, SOURCE_SIDE) {
        return Err(Error::data(
            images,
            format!(
                "images are {h}×{w} (header dimensions at byte offset 8), expected \
                 {SOURCE_SIDE}×{SOURCE_SIDE}"
            ),
        ));
    }
    let lbl = idx::read_labels(labels, kind.num_classes().expect("a fixed class count"))?;
    if lbl.len() != n {
        return Err(Error::data(
            labels,
            format!(
                "{} labels but {} holds {n} images (counts at byte offset 4 of each file)",
                lbl.len(),
                images.display()
            ),
        ));
    }
    let (mean, std) = kind.mean_std();
    Ok(Dataset {
        images: pad_images(&img.data, n, h, w, PAD),
        labels: lbl,
        n,
        channels: 1,
        height: h + 2 * PAD,
        width: w + 2 * PAD,
        num_classes: kind.num_classes().expect("a fixed class count"),
        mean,
        std,
        name: name.to_string(),
    })
}

/// Zero-pads `n` single-channel h×w images by `pad` pixels on every side.
pub fn pad_images(src: &[u8], n: usize, h: usize, w: usize, pad: usize) -> Vec<u8> {
    let (ph, pw) = (h + 2 * pad, w + 2 * pad);
    let mut out = vec![0u8; n * ph * pw];
    for (s, d) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(ph * pw)) {
        for y in 0..h {
            let o = (y + pad) * pw + pad;
            d[o..o + w].copy_from_slice(&s[y * w..(y + 1) * w]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_places_image_in_the_centre() {
        let src: Vec<u8> = (1..=6).collect(); // one 2×3 image
        let p = pad_images(&src, 1, 2, 3, 1);
        #[rustfmt::skip]
        let want = vec![
            0, 0, 0, 0, 0,
            0, 1, 2, 3, 0,
            0, 4, 5, 6, 0,
            0, 0, 0, 0, 0,
        ];
        assert_eq!(p, want);
    }
}
