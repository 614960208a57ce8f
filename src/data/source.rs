//! Where a [`super::Loader`] takes its examples from: an in-memory [`Dataset`] (Fashion-MNIST,
//! CIFAR, synthetic) or a lazily decoded [`ImageFolder`].

use std::sync::Arc;

use super::folder::ImageFolder;
use super::transform::{IMAGENET_MEAN, IMAGENET_STD};
use super::Dataset;
use crate::error::Result;

/// The examples behind a loader. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub enum Source {
    /// Raw pixels in memory.
    Memory(Arc<Dataset>),
    /// JPEG files decoded on demand.
    Folder(Arc<ImageFolder>),
}

impl Source {
    /// Number of examples.
    pub fn len(&self) -> usize {
        match self {
            Source::Memory(d) => d.n,
            Source::Folder(f) => f.len(),
        }
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A name for logs, e.g. `cifar10/train` or `imagefolder/val`.
    pub fn name(&self) -> &str {
        match self {
            Source::Memory(d) => &d.name,
            Source::Folder(f) => f.name(),
        }
    }

    /// The shape `[channels, height, width]` of the images a loader delivers.
    pub fn shape(&self) -> [usize; 3] {
        match self {
            Source::Memory(d) => [d.channels, d.height, d.width],
            Source::Folder(f) => [3, f.image_size(), f.image_size()],
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        match self {
            Source::Memory(d) => d.num_classes,
            Source::Folder(f) => f.classes().len(),
        }
    }

    /// The label of example `i`.
    pub fn label(&self, i: usize) -> u16 {
        match self {
            Source::Memory(d) => d.labels[i],
            Source::Folder(f) => f.label(i),
        }
    }

    /// Per-channel `(mean, std)` of the normalisation applied.
    pub fn mean_std(&self) -> (&[f32], &[f32]) {
        match self {
            Source::Memory(d) => (&d.mean, &d.std),
            Source::Folder(_) => (&IMAGENET_MEAN, &IMAGENET_STD),
        }
    }

    /// Image files skipped as unreadable (image folders with `--skip-bad-images`; else 0).
    pub fn skipped(&self) -> usize {
        match self {
            Source::Memory(_) => 0,
            Source::Folder(f) => f.skipped(),
        }
    }

    /// Checks the in-memory dataset's consistency (folders are checked when scanned).
    pub fn validate(&self) -> Result<()> {
        match self {
            Source::Memory(d) => d.validate(),
            Source::Folder(_) => Ok(()),
        }
    }
}

impl From<Dataset> for Source {
    fn from(d: Dataset) -> Source {
        Source::Memory(Arc::new(d))
    }
}

impl From<Arc<Dataset>> for Source {
    fn from(d: Arc<Dataset>) -> Source {
        Source::Memory(d)
    }
}

impl From<ImageFolder> for Source {
    fn from(f: ImageFolder) -> Source {
        Source::Folder(Arc::new(f))
    }
}

impl From<Arc<ImageFolder>> for Source {
    fn from(f: Arc<ImageFolder>) -> Source {
        Source::Folder(f)
    }
}
