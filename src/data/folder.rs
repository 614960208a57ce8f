//! ImageNet-format image folders (`--dataset imagefolder`): `DIR/train/<class>/*.JPEG` and
//! `DIR/val/<class>/*.JPEG`, read lazily.
//!
//! Scanning lists the files and checks each one's structure cheaply ([`jpeg::check_structure`]:
//! the start marker and, near the end, the end marker; two small reads, in parallel), so
//! that a file of another format or a truncated one is reported before training starts,
//! naming the file. Pixels are read and decoded only when a batch needs them, on the folder's
//! own small pool of decode threads, ahead of the training step (the [`super::Loader`]'s
//! bounded prefetch); memory stays at a few batches whatever the dataset's size.
//!
//! Classes are the sorted names of the folders under `train/` (class index = position, as
//! torchvision's `ImageFolder`); files are `.jpg`/`.jpeg`/`.JPEG` (any case) anywhere under
//! a class folder, in sorted path order; other files are ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::augment::Normalizer;
use super::jpeg;
use super::loader::stream;
use super::transform::{self, TrainCrop, IMAGENET_MEAN, IMAGENET_STD};
use super::Split;
use crate::error::{Error, Result};

/// Stream tag of the per-example training augmentation of image folders.
const FOLDER_AUGMENT_STREAM: u64 = 0x4946_4147; // "IFAG"

/// The image size of `--dataset imagefolder` when `--image-size` is not given.
pub const DEFAULT_IMAGE_SIZE: usize = 224;

/// How an image folder is read.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderOptions {
    /// Side S of the square images produced (training crops and evaluation centre crops).
    pub image_size: usize,
    /// Skip unreadable files (counted) instead of failing on the first one.
    pub skip_bad: bool,
    /// Threads decoding the images of a batch (at least 1).
    pub decode_threads: usize,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            image_size: DEFAULT_IMAGE_SIZE,
            skip_bad: false,
            decode_threads: 2,
        }
    }
}

/// Whether `path` has a JPEG extension (`jpg` or `jpeg`, any case).
fn is_jpeg_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

/// The sub-folders of `dir` by name, sorted (byte order, as Python's `sorted`).
fn sub_folders(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let path = e.path();
        if path.is_dir() {
            let name = e.file_name().into_string().map_err(|n| {
                Error::data(dir, format!("class folder name {n:?} is not valid UTF-8"))
            })?;
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The folder of `split` under `root` (`train/` or `val/`), which must exist.
pub fn split_dir(root: &Path, split: Split) -> Result<PathBuf> {
    let name = match split {
        Split::Train => "train",
        Split::Test => "val",
    };
    let dir = root.join(name);
    if !dir.is_dir() {
        return Err(Error::data(
            &dir,
            format!(
                "missing the {name}/ folder of the image-folder dataset in {} (expected \
                 {name}/<class>/*.JPEG)",
                root.display()
            ),
        ));
    }
    Ok(dir)
}

/// The class names of the image folder at `root`: the sorted folder names under `train/`.
pub fn class_names(root: &Path) -> Result<Vec<String>> {
    let dir = split_dir(root, Split::Train)?;
    let names = sub_folders(&dir)?;
    if names.is_empty() {
        return Err(Error::data(
            &dir,
            "no class folders (expected train/<class>/*.JPEG)",
        ));
    }
    if names.len() > usize::from(u16::MAX) {
        return Err(Error::data(
            &dir,
            format!("{} classes; at most 65535", names.len()),
        ));
    }
    Ok(names)
}

/// The JPEG files anywhere under `dir`, sorted by path.
fn jpeg_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = e.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            jpeg_files(&path, out)?;
        } else if is_jpeg_name(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// One split of an image folder: the file list and labels, read lazily.
#[derive(Debug)]
pub struct ImageFolder {
    files: Vec<PathBuf>,
    labels: Vec<u16>,
    classes: Vec<String>,
    size: usize,
    skip_bad: bool,
    norm: Normalizer,
    name: String,
    skipped: AtomicUsize,
    undecodable: Mutex<BTreeSet<usize>>,
    pool: rayon::ThreadPool,
}

impl ImageFolder {
    /// Scans `split` of the image folder at `root` (every file's structure checked; see the
    /// module doc). Errors name the folder or file: a missing `train/` or `val/`, a class
    /// folder with no JPEG files, a `val/` class absent from `train/`, a file that is not a
    /// JPEG or is truncated (unless `opts.skip_bad`, which skips and counts such files).
    pub fn open(root: &Path, split: Split, opts: &FolderOptions) -> Result<ImageFolder> {
        let classes = class_names(root)?;
        let dir = split_dir(root, split)?;
        let present = match split {
            Split::Train => classes.clone(),
            Split::Test => sub_folders(&dir)?,
        };
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for name in &present {
            let Ok(label) = classes.binary_search(name) else {
                return Err(Error::data(
                    dir.join(name),
                    format!(
                        "class folder '{name}' is not one of the {} classes of {}",
                        classes.len(),
                        root.join("train").display()
                    ),
                ));
            };
            let mut found = Vec::new();
            jpeg_files(&dir.join(name), &mut found)?;
            found.sort();
            labels.extend(std::iter::repeat_n(label as u16, found.len()));
            files.extend(found);
        }
        let name = format!(
            "imagefolder/{}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
        let mut folder = ImageFolder::from_parts(files, labels, classes, name, opts)?;
        folder.drop_bad_files()?;
        folder.check_classes(&dir, &present)?;
        Ok(folder)
    }

    fn from_parts(
        files: Vec<PathBuf>,
        labels: Vec<u16>,
        classes: Vec<String>,
        name: String,
        opts: &FolderOptions,
    ) -> Result<ImageFolder> {
        if opts.image_size == 0 {
            return Err(Error::Config("--image-size must be positive".into()));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.decode_threads.max(1))
            .thread_name(|i| format!("jpeg-decode-{i}"))
            .build()
            .map_err(|e| Error::Config(format!("cannot start the decode threads: {e}")))?;
        Ok(ImageFolder {
            files,
            labels,
            classes,
            size: opts.image_size,
            skip_bad: opts.skip_bad,
            norm: Normalizer::new(&IMAGENET_MEAN, &IMAGENET_STD),
            name,
            skipped: AtomicUsize::new(0),
            undecodable: Mutex::new(BTreeSet::new()),
            pool,
        })
    }

    /// Checks every file's structure; fails on the first bad one (in file order) or, with
    /// `skip_bad`, drops the bad ones and counts them.
    fn drop_bad_files(&mut self) -> Result<()> {
        let checks: Vec<Result<()>> = self.pool.install(|| {
            self.files
                .par_iter()
                .map(|f| jpeg::check_structure(f))
                .collect()
        });
        let mut keep = Vec::with_capacity(self.files.len());
        let mut first = None;
        for (i, r) in checks.into_iter().enumerate() {
            match r {
                Ok(()) => keep.push(i),
                Err(e) if !self.skip_bad => {
                    return Err(Error::Data {
                        path: self.files[i].clone(),
                        msg: format!("{} (use --skip-bad-images to skip such files)", short(&e)),
                    })
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        let bad = self.files.len() - keep.len();
        if let Some(e) = first {
            eprintln!(
                "{}: skipped {bad} unreadable image file(s) (--skip-bad-images); first: {e}",
                self.name
            );
        }
        self.files = keep.iter().map(|&i| self.files[i].clone()).collect();
        self.labels = keep.iter().map(|&i| self.labels[i]).collect();
        self.skipped.store(bad, Ordering::Relaxed);
        Ok(())
    }

    /// Fails naming the first class folder of `present` left without files.
    fn check_classes(&self, dir: &Path, present: &[String]) -> Result<()> {
        let mut count = vec![0usize; self.classes.len()];
        for &l in &self.labels {
            count[usize::from(l)] += 1;
        }
        for name in present {
            let label = self.classes.binary_search(name).expect("checked in open");
            if count[label] == 0 {
                let why = if self.skipped() > 0 {
                    "no readable"
                } else {
                    "no"
                };
                return Err(Error::data(
                    dir.join(name),
                    format!("empty class folder: {why} .jpg/.jpeg/.JPEG files"),
                ));
            }
        }
        Ok(())
    }

    /// A folder holding the examples at `indices`, in that order (name gets `suffix`; the
    /// skip count stays with `self`).
    pub fn subset(&self, indices: &[usize], suffix: &str, opts: &FolderOptions) -> Result<Self> {
        ImageFolder::from_parts(
            indices.iter().map(|&i| self.files[i].clone()).collect(),
            indices.iter().map(|&i| self.labels[i]).collect(),
            self.classes.clone(),
            format!("{}{suffix}", self.name),
            opts,
        )
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The class names, in class-index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The file of example `i`.
    pub fn file(&self, i: usize) -> &Path {
        &self.files[i]
    }

    /// The label of example `i`.
    pub fn label(&self, i: usize) -> u16 {
        self.labels[i]
    }

    /// Side S of the square images produced.
    pub fn image_size(&self) -> usize {
        self.size
    }

    /// A name for logs, e.g. `imagefolder/train`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Files skipped as unreadable: at the scan, and (with `skip_bad`) those found
    /// undecodable so far, each counted once however often it is drawn.
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed) + self.failed().len()
    }

    fn failed(&self) -> std::sync::MutexGuard<'_, BTreeSet<usize>> {
        // A panic elsewhere cannot leave the set inconsistent: recover it.
        self.undecodable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The augmentation of training example `i` in `epoch` of a `width × height` image: a
    /// function of `(seed, epoch, i)` only.
    pub fn train_crop(&self, seed: u64, epoch: usize, i: usize, w: usize, h: usize) -> TrainCrop {
        let mut rng = stream(seed, &[FOLDER_AUGMENT_STREAM, epoch as u64, i as u64]);
        TrainCrop::sample(&mut rng, w, h, true)
    }

    /// Decodes and transforms example `i` into `out` (3×S×S): the training transform with
    /// the crop of `(seed, epoch, i)` when `train` is `Some((seed, epoch, flip))`, the
    /// evaluation transform otherwise. A file that fails to decode is an error naming it, or
    /// with `skip_bad` is counted and comes out as zeros (the mean image).
    fn load_into(
        &self,
        i: usize,
        train: Option<(u64, usize, bool)>,
        out: &mut [f32],
    ) -> Result<()> {
        let img = match jpeg::read(&self.files[i]) {
            Ok(img) => img,
            Err(e) if self.skip_bad => {
                if self.failed().insert(i) {
                    eprintln!(
                        "{}: skipped at decoding (zeros in its place): {e}",
                        self.name
                    );
                }
                out.fill(0.0);
                return Ok(());
            }
            Err(e) => return Err(with_skip_hint(e)),
        };
        match train {
            Some((seed, epoch, flip)) => {
                let mut crop = self.train_crop(seed, epoch, i, img.width, img.height);
                crop.flip &= flip;
                transform::train_into(&img, crop, self.size, &self.norm, out)
            }
            None => transform::eval_into(&img, self.size, &self.norm, out),
        }
        Ok(())
    }

    /// Fills `x` (`indices.len()` images of 3×S×S) with examples `indices` on the decode
    /// threads: the training transform with the crop of `(seed, epoch, i)` (its flip only if
    /// `flip`) when `train` is `Some((seed, epoch, flip))`, the evaluation transform otherwise.
    /// A file that fails to decode is an error naming it (the first such file of the batch in
    /// index order), or with `skip_bad` is counted once and comes out as zeros (the mean image).
    pub fn fill(
        &self,
        indices: &[usize],
        train: Option<(u64, usize, bool)>,
        x: &mut [f32],
    ) -> Result<()> {
        let il = 3 * self.size * self.size;
        assert_eq!(x.len(), indices.len() * il, "fill: output length");
        let results: Vec<Result<()>> = self.pool.install(|| {
            x.par_chunks_mut(il)
                .zip(indices)
                .map(|(out, &i)| self.load_into(i, train, out))
                .collect()
        });
        results.into_iter().collect()
    }
}

/// The training set (when `need_train`) and evaluation set of the image folder at `root`, and
/// the evaluation split's name: `val/` (`"test"`), or with `valid_split > 0` a held-out part
/// of `train/` chosen by `seed` as for the in-memory datasets (`"validation"`).
pub fn open_splits(
    root: &Path,
    opts: &FolderOptions,
    need_train: bool,
    valid_split: f64,
    seed: u64,
) -> Result<(Option<ImageFolder>, ImageFolder, &'static str)> {
    if valid_split > 0.0 {
        let full = ImageFolder::open(root, Split::Train, opts)?;
        let (train, val) = super::validation_indices(full.len(), valid_split, seed)?;
        let fit = need_train
            .then(|| full.subset(&train, "/fit", opts))
            .transpose()?;
        if let Some(f) = &fit {
            f.skipped.store(full.skipped(), Ordering::Relaxed);
        }
        return Ok((fit, full.subset(&val, "/val", opts)?, "validation"));
    }
    let train = need_train
        .then(|| ImageFolder::open(root, Split::Train, opts))
        .transpose()?;
    Ok((train, ImageFolder::open(root, Split::Test, opts)?, "test"))
}

/// A decoding error with the hint that such files can be skipped.
fn with_skip_hint(e: Error) -> Error {
    match e {
        Error::Data { path, msg } => Error::Data {
            path,
            msg: format!("{msg} (use --skip-bad-images to skip such files)"),
        },
        other => other,
    }
}

/// The message of a data error without its path (the caller names the file itself).
fn short(e: &Error) -> String {
    match e {
        Error::Data { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}
