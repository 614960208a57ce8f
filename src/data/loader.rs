//! The batch loader: deterministic per-epoch shuffling, training augmentation and background
//! prefetch.
//!
//! Everything random is a pure function of the seed: the order of epoch `e` depends only on
//! `(seed, e)` and the augmentation of batch `b` of epoch `e` only on `(seed, e, b)`, so a
//! run resumed at any epoch (or batch, with [`Loader::epoch_from`]) sees exactly the batches
//! an uninterrupted run would, whatever the thread timing.
//!
//! The examples come from a [`Source`]: an in-memory [`Dataset`] (augmented by pad + random
//! crop + flip, see [`super::augment`]) or an [`super::folder::ImageFolder`] (decoded on its
//! own threads; random-resized crop + flip drawn per example from `(seed, epoch, example
//! index)`, see [`super::transform`]).

use super::augment::{augment_into, normalize_into, CropFlip, Normalizer};
use super::source::Source;
use super::Dataset;
use crate::backend::check_labels;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Stream tags, so that shuffling, augmentation and validation splits never share a stream.
const SHUFFLE_STREAM: u64 = 0x5348_5546; // "SHUF"
const AUGMENT_STREAM: u64 = 0x4155_474d; // "AUGM"
const VALIDATION_STREAM: u64 = 0x5641_4c49; // "VALI"

/// A generator for the stream named by `ids` under `seed` (nested [`Rng::derive`]).
pub(crate) fn stream(seed: u64, ids: &[u64]) -> Rng {
    ids.iter()
        .fold(Rng::new(seed), |mut r, &id| Rng::derive(r.next_u64(), id))
}

/// Training (shuffle + augment) or evaluation (dataset order, normalisation only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Shuffle every epoch and augment (random crop + flip).
    Train,
    /// Dataset order, no augmentation.
    Eval,
}

/// How a [`Loader`] cuts a dataset into batches.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Examples per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Training or evaluation behaviour.
    pub mode: Mode,
    /// Drop a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Use only the first `limit` examples of the dataset (quick runs).
    pub limit: Option<usize>,
    /// Seed of the shuffling and augmentation streams.
    pub seed: u64,
    /// Batches assembled ahead of the consumer (bounded channel depth, at least 1).
    pub prefetch: usize,
    /// Zero padding before the random crop (training only; in-memory datasets).
    pub pad: usize,
    /// Random horizontal flips with probability 1/2 (training only).
    pub flip: bool,
    /// Augment the examples of one batch in parallel on the rayon pool (the worker thread
    /// alone is usually fast enough; enabling this competes with a CPU training step).
    /// Image folders always decode on their own decode threads.
    pub parallel: bool,
}

impl LoaderConfig {
    /// Training defaults (docs/computation.md, Data): shuffle, pad 4 + random crop, flips, keep the last
    /// partial batch, prefetch 3 batches.
    pub fn train(batch_size: usize, seed: u64) -> LoaderConfig {
        LoaderConfig {
            batch_size,
            mode: Mode::Train,
            drop_last: false,
            limit: None,
            seed,
            prefetch: 3,
            pad: 4,
            flip: true,
            parallel: false,
        }
    }

    /// Evaluation defaults: dataset order, no augmentation, every example exactly once.
    pub fn eval(batch_size: usize) -> LoaderConfig {
        LoaderConfig {
            mode: Mode::Eval,
            ..LoaderConfig::train(batch_size, 0)
        }
    }
}

/// One batch: normalised images and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Images, `n × C × H × W` f32, normalised (and augmented in training mode).
    pub x: Vec<f32>,
    /// Labels as exact-integer f32, length `n`.
    pub y: Vec<f32>,
    /// Number of examples in this batch.
    pub n: usize,
    /// Position of this batch in its epoch.
    pub index: usize,
    /// Dataset indices of the examples, in batch order.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Errors unless every label is a class index in `[0, classes)`, naming the batch and the
    /// position: the host-side check made before labels go to a device, whose cross entropy
    /// does not read them back.
    pub fn check_labels(&self, classes: usize) -> Result<()> {
        check_labels(&self.y, classes, &format!("batch {}", self.index))
    }

    /// The batch as tensors on `device`: images `[n, C, H, W]` (`image` = `[C, H, W]`) and
    /// labels `[n]`. The labels are checked to be class indices in `[0, classes)` here, on the
    /// host before the upload, so a device's cross entropy never has to read them back.
    pub fn to_tensors(
        &self,
        image: [usize; 3],
        classes: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        self.check_labels(classes)?;
        let [c, h, w] = image;
        Ok((
            Tensor::from_slice(&self.x, &[self.n, c, h, w], device)?,
            Tensor::from_slice(&self.y, &[self.n], device)?,
        ))
    }
}

struct Inner {
    data: Source,
    cfg: LoaderConfig,
    norm: Normalizer,
    len: usize,
}

impl Inner {
    fn batches(&self) -> usize {
        let bs = self.cfg.batch_size;
        if self.cfg.drop_last {
            self.len / bs
        } else {
            self.len.div_ceil(bs)
        }
    }

    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.cfg.mode == Mode::Train {
            stream(self.cfg.seed, &[SHUFFLE_STREAM, epoch as u64]).shuffle(&mut order);
        }
        order
    }

    fn assemble(&self, order: &[usize], epoch: usize, index: usize) -> Batch {
        let bs = self.cfg.batch_size;
        let indices = order[index * bs..((index + 1) * bs).min(order.len())].to_vec();
        let n = indices.len();
        let il: usize = self.data.shape().iter().product();
        let mut x = vec![0.0f32; n * il];
        let y = indices
            .iter()
            .map(|&i| f32::from(self.data.label(i)))
            .collect();
        match &self.data {
            Source::Memory(d) => self.augment(d, epoch, index, &indices, &mut x),
            Source::Folder(f) => {
                let train =
                    (self.cfg.mode == Mode::Train).then_some((self.cfg.seed, epoch, self.cfg.flip));
                f.fill(&indices, train, &mut x);
            }
        }
        Batch {
            x,
            y,
            n,
            index,
            indices,
        }
    }

    /// The in-memory path: normalisation, or pad + crop + flip drawn per batch.
    fn augment(&self, d: &Dataset, epoch: usize, index: usize, indices: &[usize], x: &mut [f32]) {
        let il = d.image_len();
        match self.cfg.mode {
            Mode::Eval => {
                let work = |(out, &i): (&mut [f32], &usize)| {
                    normalize_into(d.image(i), &self.norm, out);
                };
                if self.cfg.parallel {
                    x.par_chunks_mut(il).zip(indices).for_each(work);
                } else {
                    x.chunks_mut(il).zip(indices).for_each(work);
                }
            }
            Mode::Train => {
                let (pad, flip) = (self.cfg.pad, self.cfg.flip);
                let mut rng = stream(self.cfg.seed, &[AUGMENT_STREAM, epoch as u64, index as u64]);
                let cfs: Vec<CropFlip> = indices
                    .iter()
                    .map(|_| CropFlip::sample(&mut rng, pad, flip))
                    .collect();
                let work = |((out, &i), &cf): ((&mut [f32], &usize), &CropFlip)| {
                    augment_into(d.image(i), d.height, d.width, pad, cf, &self.norm, out);
                };
                if self.cfg.parallel {
                    x.par_chunks_mut(il).zip(indices).zip(&cfs).for_each(work);
                } else {
                    x.chunks_mut(il).zip(indices).zip(&cfs).for_each(work);
                }
            }
        }
    }
}

/// Cuts a dataset into normalised (and, in training mode, shuffled and augmented) batches,
/// assembled on a background thread ahead of the consumer. Cheap to clone (the data are
/// shared).
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

impl Loader {
    /// A loader over `data`: a [`Dataset`] or an `Arc<Dataset>` shared with other loaders, an
    /// [`ImageFolder`](super::folder::ImageFolder), or a [`Source`].
    pub fn new(data: impl Into<Source>, cfg: LoaderConfig) -> Result<Loader> {
        let data = data.into();
        data.validate()?;
        if cfg.batch_size == 0 {
            return Err(Error::Config("loader batch size must be positive".into()));
        }
        if cfg.prefetch == 0 {
            return Err(Error::Config(
                "loader prefetch depth must be positive".into(),
            ));
        }
        let len = cfg.limit.map_or(data.len(), |l| l.min(data.len()));
        let (mean, std) = data.mean_std();
        Ok(Loader {
            inner: Arc::new(Inner {
                norm: Normalizer::new(mean, std),
                data,
                cfg,
                len,
            }),
        })
    }

    /// Where the examples come from.
    pub fn source(&self) -> &Source {
        &self.inner.data
    }

    /// The in-memory dataset.
    ///
    /// # Panics
    /// When the loader reads an image folder (use [`source`](Loader::source)).
    pub fn dataset(&self) -> &Arc<Dataset> {
        match &self.inner.data {
            Source::Memory(d) => d,
            Source::Folder(f) => panic!("loader over {} has no in-memory dataset", f.name()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.cfg
    }

    /// Examples used per epoch before `drop_last` (the dataset size, capped by `limit`).
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether there are no examples at all.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Batches per epoch: `len / batch_size`, rounded up unless `drop_last`.
    pub fn batches_per_epoch(&self) -> usize {
        self.inner.batches()
    }

    /// Examples actually delivered per epoch (less than [`len`](Loader::len) with
    /// `drop_last`).
    pub fn examples_per_epoch(&self) -> usize {
        let i = &self.inner;
        if i.cfg.drop_last {
            i.batches() * i.cfg.batch_size
        } else {
            i.len
        }
    }

    /// The dataset indices of epoch `epoch` in delivery order: a permutation of
    /// `0..len()` that depends only on `(seed, epoch)` in training mode, `0..len()` in order in
    /// evaluation mode.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        self.inner.order(epoch)
    }

    /// Assembles batch `index` of `epoch` on the calling thread (the same batch the iterator
    /// yields). Recomputes the epoch's order: use [`epoch`](Loader::epoch) for whole epochs.
    pub fn batch(&self, epoch: usize, index: usize) -> Batch {
        assert!(
            index < self.batches_per_epoch(),
            "batch {index} of an epoch of {} batches",
            self.batches_per_epoch()
        );
        self.inner.assemble(&self.inner.order(epoch), epoch, index)
    }

    /// All batches of `epoch`, assembled ahead on a background thread.
    pub fn epoch(&self, epoch: usize) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `first` on (resuming mid-epoch); identical to the
    /// tail of [`epoch`](Loader::epoch).
    pub fn epoch_from(&self, epoch: usize, first: usize) -> EpochIter {
        let total = self.batches_per_epoch();
        let first = first.min(total);
        let inner = Arc::clone(&self.inner);
        let (tx, rx) = sync_channel(inner.cfg.prefetch);
        let worker = std::thread::Builder::new()
            .name(format!("loader-{}", inner.data.name()))
            .spawn(move || {
                let order = inner.order(epoch);
                for b in first..total {
                    if tx.send(inner.assemble(&order, epoch, b)).is_err() {
                        return; // the consumer dropped the iterator
                    }
                }
            })
            .expect("spawn loader thread");
        EpochIter {
            rx: Some(rx),
            worker: Some(worker),
            remaining: total - first,
        }
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("dataset", &self.inner.data.name())
            .field("len", &self.inner.len)
            .field("config", &self.inner.cfg)
            .finish()
    }
}

/// The batches of one epoch, produced by a background thread through a bounded channel.
/// Dropping it early stops the thread.
pub struct EpochIter {
    rx: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Iterator for EpochIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        match self.rx.as_ref()?.recv() {
            Ok(b) => {
                self.remaining -= 1;
                Some(b)
            }
            Err(_) => {
                // The worker hung up early: it panicked. Re-raise its panic here.
                self.rx = None;
                if let Some(Err(p)) = self.worker.take().map(JoinHandle::join) {
                    std::panic::resume_unwind(p);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for EpochIter {}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.rx = None; // unblocks a worker waiting in send()
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Splits off a random validation set of `round(fraction × n)` examples (chosen by `seed`);
/// returns `(train, validation)`, each in the original dataset order.
pub fn split_validation(data: &Dataset, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    let (train, val) = validation_indices(data.n, fraction, seed)?;
    Ok((data.subset(&train, "/fit"), data.subset(&val, "/val")))
}

/// The indices `(train, validation)` of [`split_validation`] for a dataset of `n` examples.
pub fn validation_indices(n: usize, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::Config(format!(
            "validation fraction {fraction} must be in [0, 1)"
        )));
    }
    let n_val = (fraction * n as f64).round() as usize;
    let val = stream(seed, &[VALIDATION_STREAM]).choose(n, n_val);
    let mut in_val = vec![false; n];
    for &i in &val {
        in_val[i] = true;
    }
    let train: Vec<usize> = (0..n).filter(|&i| !in_val[i]).collect();
    Ok((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        Dataset::synthetic(37, 3, 8, 8, 10, 9)
    }

    #[test]
    fn batch_tensors_check_labels_on_the_host() {
        let l = Loader::new(tiny(), LoaderConfig::train(5, 1)).unwrap();
        let mut b = l.batch(0, 1);
        let (x, y) = b.to_tensors([3, 8, 8], 10, &Device::Cpu).unwrap();
        assert_eq!((x.shape(), y.shape()), (&[5, 3, 8, 8][..], &[5][..]));
        assert_eq!(y.to_vec().unwrap(), b.y);
        b.y[3] = 10.0;
        let e = b.to_tensors([3, 8, 8], 10, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("batch 1: labels[3] = 10"), "{e}");
        b.y[3] = 2.5;
        assert!(b.to_tensors([3, 8, 8], 10, &Device::Cpu).is_err());
        assert!(b.check_labels(10).is_err());
        b.y[3] = 9.0;
        assert!(b.check_labels(10).is_ok());
    }

    #[test]
    fn iterator_matches_synchronous_batches() {
        let l = Loader::new(tiny(), LoaderConfig::train(5, 1)).unwrap();
        let it: Vec<Batch> = l.epoch(2).collect();
        assert_eq!(it.len(), 8);
        for (b, got) in it.iter().enumerate() {
            assert_eq!(*got, l.batch(2, b));
        }
        let tail: Vec<Batch> = l.epoch_from(2, 5).collect();
        assert_eq!(tail, it[5..].to_vec());
    }

    #[test]
    fn dropping_early_stops_worker() {
        let l = Loader::new(tiny(), LoaderConfig::train(1, 1)).unwrap();
        let mut it = l.epoch(0);
        assert!(it.next().is_some());
        drop(it); // must not hang
    }

    #[test]
    fn parallel_equals_serial() {
        let mut cfg = LoaderConfig::train(16, 4);
        let a: Vec<Batch> = Loader::new(tiny(), cfg.clone()).unwrap().epoch(1).collect();
        cfg.parallel = true;
        let b: Vec<Batch> = Loader::new(tiny(), cfg).unwrap().epoch(1).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn validation_split_partitions() {
        let d = tiny();
        let (t, v) = split_validation(&d, 0.2, 3).unwrap();
        assert_eq!((t.n, v.n), (30, 7));
        t.validate().unwrap();
        v.validate().unwrap();
        let (t2, v2) = split_validation(&d, 0.2, 3).unwrap();
        assert_eq!((t, v), (t2, v2));
        assert!(split_validation(&d, 1.0, 3).is_err());
    }
}
