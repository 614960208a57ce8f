//! The data layer (docs/computation.md, Data): readers for Fashion-MNIST (gzipped IDX) and
//! CIFAR-10/100 (binary batches), training augmentation (pad-4 random crop, horizontal flip,
//! normalisation), ImageNet-format JPEG folders decoded lazily ([`folder`]) and a deterministic,
//! prefetching batch [`Loader`].
//!
//! Every reader checks sizes, magic numbers and label ranges and fails with an
//! [`Error::Data`] that names the file and the byte offset; a dataset is never silently short.

pub mod augment;
pub mod cifar;
pub mod fashion_mnist;
pub mod folder;
pub mod idx;
pub mod jpeg;
pub mod loader;
pub mod resize;
pub mod source;
pub mod transform;

pub use folder::{FolderOptions, ImageFolder};
pub use loader::{
    split_validation, validation_indices, Batch, EpochIter, Loader, LoaderConfig, Mode,
};
pub use source::Source;

use crate::error::{Error, Result};
use crate::rng::Rng;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Environment variable that overrides every dataset's default directory (an explicit
/// `--data-dir` overrides it in turn).
pub const DATA_DIR_ENV: &str = "SUPTICKETS_DATA_DIR";

/// Which half of a dataset to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split (60k Fashion-MNIST, 50k CIFAR).
    Train,
    /// The test split (10k for all three datasets).
    Test,
}

/// The datasets the engine knows how to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// Fashion-MNIST, 28×28 gray padded to 32×32, 10 classes.
    FashionMnist,
    /// CIFAR-10, 3×32×32, 10 classes.
    Cifar10,
    /// CIFAR-100, 3×32×32, 100 fine classes.
    Cifar100,
    /// An ImageNet-format folder of JPEGs (`train/<class>/`, `val/<class>/`), 3×S×S, one
    /// class per folder under `train/` (see [`folder`]).
    ImageFolder,
}

impl DatasetKind {
    /// Every kind, in the order their names are listed in messages.
    pub const ALL: [DatasetKind; 4] = [
        DatasetKind::FashionMnist,
        DatasetKind::Cifar10,
        DatasetKind::Cifar100,
        DatasetKind::ImageFolder,
    ];

    /// Parses a command-line name: `fashion-mnist`, `cifar10`, `cifar100` or `imagefolder`
    /// (case-insensitive; `fashion_mnist`, `fmnist`, `cifar-10`, `cifar-100`, `image-folder`
    /// are accepted too).
    pub fn parse(s: &str) -> Result<DatasetKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" | "fmnist" => {
                Ok(DatasetKind::FashionMnist)
            }
            "cifar10" | "cifar-10" | "cifar_10" => Ok(DatasetKind::Cifar10),
            "cifar100" | "cifar-100" | "cifar_100" => Ok(DatasetKind::Cifar100),
            "imagefolder" | "image-folder" | "image_folder" => Ok(DatasetKind::ImageFolder),
            _ => Err(Error::Config(format!(
                "unknown dataset '{s}'; valid names: {}",
                DatasetKind::ALL.map(|k| k.name()).join(", ")
            ))),
        }
    }

    /// The canonical command-line name.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::ImageFolder => "imagefolder",
        }
    }

    /// Number of classes; `None` for an image folder, whose classes are its folders (see
    /// [`folder::class_names`]).
    pub fn num_classes(self) -> Option<usize> {
        match self {
            DatasetKind::FashionMnist | DatasetKind::Cifar10 => Some(10),
            DatasetKind::Cifar100 => Some(100),
            DatasetKind::ImageFolder => None,
        }
    }

    /// Number of image channels.
    pub fn channels(self) -> usize {
        match self {
            DatasetKind::FashionMnist => 1,
            DatasetKind::Cifar10 | DatasetKind::Cifar100 | DatasetKind::ImageFolder => 3,
        }
    }

    /// Per-channel normalisation `(mean, std)` of pixels scaled to [0, 1] (docs/computation.md,
    /// Data).
    pub fn mean_std(self) -> (Vec<f32>, Vec<f32>) {
        match self {
            DatasetKind::FashionMnist => (vec![0.2860], vec![0.3530]),
            DatasetKind::Cifar10 => (vec![0.4914, 0.4822, 0.4465], vec![0.2023, 0.1994, 0.2010]),
            DatasetKind::Cifar100 => (vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762]),
            DatasetKind::ImageFolder => (
                transform::IMAGENET_MEAN.to_vec(),
                transform::IMAGENET_STD.to_vec(),
            ),
        }
    }

    /// The directory used when neither `--data-dir` nor [`DATA_DIR_ENV`] is given:
    /// `/usr/share/datasets/fashion-mnist/` (Debian package `dataset-fashion-mnist`) for
    /// Fashion-MNIST, `./data` (relative to the working directory; the extracted
    /// `cifar-10-batches-bin/` or `cifar-100-binary/` folder may sit inside it) for CIFAR,
    /// `./data/imagenet` (holding `train/` and `val/`) for an image folder.
    pub fn default_dir(self) -> PathBuf {
        match self {
            DatasetKind::FashionMnist => PathBuf::from(fashion_mnist::DEFAULT_DIR),
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => PathBuf::from("data"),
            DatasetKind::ImageFolder => PathBuf::from("data/imagenet"),
        }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<DatasetKind> {
        DatasetKind::parse(s)
    }
}

/// Where a data directory came from, so that "not found" messages can say which knob to turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirSource {
    /// An explicit `--data-dir` argument.
    Explicit,
    /// The [`DATA_DIR_ENV`] environment variable.
    Env,
    /// [`DatasetKind::default_dir`].
    Default,
}

impl DirSource {
    /// Human-readable description for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            DirSource::Explicit => "given by --data-dir",
            DirSource::Env => "given by SUPTICKETS_DATA_DIR",
            DirSource::Default => "the default; override with --data-dir or SUPTICKETS_DATA_DIR",
        }
    }
}

/// Chooses the data directory: `explicit` (from `--data-dir`) if given, else the value of
/// [`DATA_DIR_ENV`] in the process environment if set and non-empty, else the kind's default.
pub fn resolve_dir(kind: DatasetKind, explicit: Option<&Path>) -> (PathBuf, DirSource) {
    resolve_dir_with(kind, explicit, std::env::var_os(DATA_DIR_ENV).as_deref())
}

/// [`resolve_dir`] with the environment value passed in (testable without touching the
/// process environment).
pub fn resolve_dir_with(
    kind: DatasetKind,
    explicit: Option<&Path>,
    env: Option<&OsStr>,
) -> (PathBuf, DirSource) {
    if let Some(p) = explicit {
        return (p.to_path_buf(), DirSource::Explicit);
    }
    match env {
        Some(v) if !v.is_empty() => (PathBuf::from(v), DirSource::Env),
        _ => (kind.default_dir(), DirSource::Default),
    }
}

/// Loads one split of an in-memory dataset. `dir` is an explicit `--data-dir`; without it the
/// directory comes from [`DATA_DIR_ENV`] or [`DatasetKind::default_dir`] (see
/// [`resolve_dir`]). An image folder is not loaded into memory: open it with
/// [`ImageFolder::open`] (this returns an error saying so).
pub fn load(kind: DatasetKind, dir: Option<&Path>, split: Split) -> Result<Dataset> {
    let (dir, source) = resolve_dir(kind, dir);
    match kind {
        DatasetKind::FashionMnist => fashion_mnist::load(&dir, source, split),
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => cifar::load(kind, &dir, source, split),
        DatasetKind::ImageFolder => Err(Error::Config(format!(
            "{}: an image folder is read lazily (ImageFolder::open), not loaded into memory",
            dir.display()
        ))),
    }
}

/// An in-memory image-classification dataset: raw bytes in N×C×H×W order plus labels and the
/// per-channel normalisation the loader applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Pixels, N×C×H×W bytes (CIFAR: R, G, B planes; Fashion-MNIST: already padded to 32×32).
    pub images: Vec<u8>,
    /// One label per image, each `< num_classes`.
    pub labels: Vec<u16>,
    /// Number of examples.
    pub n: usize,
    /// Channels per image.
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Per-channel mean of pixels scaled to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of pixels scaled to [0, 1].
    pub std: Vec<f32>,
    /// A name for logs, e.g. `cifar10/train`.
    pub name: String,
}

impl Dataset {
    /// Bytes per image, `channels × height × width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The raw bytes of image `i` (C×H×W).
    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.image_len();
        &self.images[i * l..(i + 1) * l]
    }

    /// Checks that sizes, labels and normalisation constants are consistent.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(format!("dataset '{}': {msg}", self.name)));
        if self.images.len() != self.n * self.image_len() {
            return bad(format!(
                "{} image bytes for {} images of {}×{}×{}",
                self.images.len(),
                self.n,
                self.channels,
                self.height,
                self.width
            ));
        }
        if self.labels.len() != self.n {
            return bad(format!(
                "{} labels for {} images",
                self.labels.len(),
                self.n
            ));
        }
        if self.mean.len() != self.channels || self.std.len() != self.channels {
            return bad(format!(
                "{} means and {} stds for {} channels",
                self.mean.len(),
                self.std.len(),
                self.channels
            ));
        }
        if let Some(s) = self.std.iter().find(|s| s.is_nan() || **s <= 0.0) {
            return bad(format!("non-positive std {s}"));
        }
        if let Some((i, l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, l)| usize::from(**l) >= self.num_classes)
        {
            return bad(format!(
                "label {l} of example {i} is out of range for {} classes",
                self.num_classes
            ));
        }
        Ok(())
    }

    /// A new dataset holding the examples at `indices`, in that order (name gets `suffix`).
    pub fn subset(&self, indices: &[usize], suffix: &str) -> Dataset {
        let l = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * l);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            n: indices.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
            mean: self.mean.clone(),
            std: self.std.clone(),
            name: format!("{}{suffix}", self.name),
        }
    }

    /// A dataset of `n` random images (uniform bytes) with random labels, for benchmarks and
    /// tests that need no files. Normalisation is mean 0.5, std 0.25 per channel.
    pub fn synthetic(
        n: usize,
        channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
        seed: u64,
    ) -> Dataset {
        assert!(num_classes > 0 && num_classes <= usize::from(u16::MAX));
        let mut rng = Rng::derive(seed, 0x5157);
        let len = n * channels * height * width;
        let mut images = Vec::with_capacity(len + 8);
        while images.len() < len {
            images.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        images.truncate(len);
        let labels = (0..n)
            .map(|_| rng.below(num_classes as u64) as u16)
            .collect();
        Dataset {
            images,
            labels,
            n,
            channels,
            height,
            width,
            num_classes,
            mean: vec![0.5; channels],
            std: vec![0.25; channels],
            name: "synthetic".to_string(),
        }
    }
}

/// Reads a whole file, mapping failures to an [`Error::Io`] that names it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(
            DatasetKind::parse("fashion-mnist").unwrap(),
            DatasetKind::FashionMnist
        );
        assert_eq!(DatasetKind::parse("CIFAR10").unwrap(), DatasetKind::Cifar10);
        assert_eq!(
            DatasetKind::parse("cifar100").unwrap(),
            DatasetKind::Cifar100
        );
        for k in DatasetKind::ALL {
            assert_eq!(DatasetKind::parse(k.name()).unwrap(), k);
        }
        let e = DatasetKind::parse("mnist").unwrap_err().to_string();
        assert!(
            e.contains("mnist") && e.contains("fashion-mnist, cifar10, cifar100, imagefolder"),
            "{e}"
        );
    }

    #[test]
    fn dir_precedence() {
        let k = DatasetKind::FashionMnist;
        let env = OsStr::new("/from/env");
        let exp = Path::new("/explicit");
        assert_eq!(
            resolve_dir_with(k, Some(exp), Some(env)),
            (PathBuf::from("/explicit"), DirSource::Explicit)
        );
        assert_eq!(
            resolve_dir_with(k, None, Some(env)),
            (PathBuf::from("/from/env"), DirSource::Env)
        );
        assert_eq!(
            resolve_dir_with(k, None, None),
            (
                PathBuf::from("/usr/share/datasets/fashion-mnist/"),
                DirSource::Default
            )
        );
        assert_eq!(
            resolve_dir_with(k, None, Some(OsStr::new(""))).1,
            DirSource::Default
        );
    }

    #[test]
    fn synthetic_is_valid_and_subset_works() {
        let d = Dataset::synthetic(10, 3, 4, 5, 7, 1);
        d.validate().unwrap();
        let s = d.subset(&[3, 1], "/sub");
        s.validate().unwrap();
        assert_eq!(s.image(0), d.image(3));
        assert_eq!(s.labels, vec![d.labels[3], d.labels[1]]);
        assert_eq!(s.name, "synthetic/sub");
    }
}
