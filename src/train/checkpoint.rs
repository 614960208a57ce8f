//! Checkpoints: one safetensors file holding the whole training state.
//!
//! Tensor naming (all `F32`, little-endian, row-major):
//! - `<param>`: every parameter's value, named as in the [`ParamStore`](crate::nn::ParamStore)
//!   (PyTorch state-dict names, e.g. `conv1.weight`, `layer1.0.bn1.bias`, `linear.weight`);
//! - `<buffer>`: batch-norm running statistics (`bn1.running_mean`, `bn1.running_var`, ...);
//! - `<param>.mask`: the 0/1 mask of a masked (sparse) weight, only where one exists;
//! - `<param>.momentum`: the SGD momentum buffer, once the optimizer has made a step.
//!
//! The safetensors `__metadata__` map holds one key per field of [`CheckpointMeta`], each value
//! a JSON text: `format` (`"suptickets-checkpoint"`), `format_version`, `version` (crate version),
//! `epoch` (epochs completed), `step` (optimizer steps completed), `rng` (the trainer's
//! xoshiro256++ state, four u64), `model` (the [`ModelSpec`]), `train_config` (the
//! [`TrainConfig`], or null), `wall_seconds` (training time so far) and `sparse` (the sparse
//! method's [`SparseState`]: mask-update counters and the running training-FLOPs sum, or null;
//! absent in older checkpoints).
//!
//! Files are written atomically: `<path>.tmp`, fsync, rename over `<path>`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::finite::has_non_finite;
use crate::error::{Error, Result};
use crate::models::{build, ModelConfig};
use crate::nn::Network;
use crate::sparse::methods::SparseState;
use crate::tensor::Tensor;

/// The `format` metadata value of a suptickets checkpoint.
pub const FORMAT: &str = "suptickets-checkpoint";
/// The checkpoint layout version (bumped on incompatible changes).
pub const FORMAT_VERSION: u32 = 1;

/// The model-building recipe stored in a checkpoint (mirrors [`ModelConfig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Model name.
    pub name: String,
    /// Output classes.
    pub num_classes: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width (None = the model's default).
    pub image_size: Option<usize>,
    /// Channel multiplier.
    pub width: f32,
    /// Initialisation seed.
    pub seed: u64,
}

impl From<&ModelConfig> for ModelSpec {
    fn from(c: &ModelConfig) -> ModelSpec {
        ModelSpec {
            name: c.name.clone(),
            num_classes: c.num_classes,
            in_channels: c.in_channels,
            image_size: c.image_size,
            width: c.width,
            seed: c.seed,
        }
    }
}

impl ModelSpec {
    /// The equivalent [`ModelConfig`].
    pub fn to_config(&self) -> ModelConfig {
        ModelConfig {
            name: self.name.clone(),
            num_classes: self.num_classes,
            in_channels: self.in_channels,
            image_size: self.image_size,
            width: self.width,
            seed: self.seed,
        }
    }
}

/// Prefix of the Sup-tickets state tensors of a checkpoint (not part of the model).
pub const SUP_PREFIX: &str = "sup.";

/// Everything in a checkpoint besides the tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Crate version of the writer.
    pub version: String,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: u64,
    /// The trainer's RNG state.
    pub rng: [u64; 4],
    /// How to rebuild the model.
    pub model: ModelSpec,
    /// The training configuration (None for a bare model).
    pub train_config: Option<TrainConfig>,
    /// Training wall-clock seconds so far (summed over resumed runs).
    pub wall_seconds: f64,
    /// The sparse method's state (None for a bare model or an older checkpoint).
    #[serde(default)]
    pub sparse: Option<SparseState>,
    /// Sup-tickets: tickets superposed so far (their state is in the `sup.*` tensors).
    #[serde(default)]
    pub sup_tickets: Option<usize>,
}

impl CheckpointMeta {
    /// Metadata for a model at epoch 0.
    pub fn new(model: ModelSpec) -> CheckpointMeta {
        CheckpointMeta {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            epoch: 0,
            step: 0,
            rng: [0; 4],
            model,
            train_config: None,
            wall_seconds: 0.0,
            sparse: None,
            sup_tickets: None,
        }
    }

    fn to_map(&self) -> Result<HashMap<String, String>> {
        let v = serde_json::to_value(self)
            .map_err(|e| Error::Config(format!("checkpoint metadata: {e}")))?;
        let serde_json::Value::Object(obj) = v else {
            unreachable!("a struct serialises to an object")
        };
        Ok(obj.into_iter().map(|(k, v)| (k, v.to_string())).collect())
    }

    fn from_map(path: &Path, map: &HashMap<String, String>) -> Result<CheckpointMeta> {
        let mut obj = serde_json::Map::new();
        for (k, v) in map {
            let val = serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.clone()));
            obj.insert(k.clone(), val);
        }
        match obj.get("format").and_then(|v| v.as_str()) {
            Some(FORMAT) => {}
            other => {
                return Err(Error::data(
                    path,
                    format!(
                        "not a suptickets checkpoint (metadata format is {other:?}, expected {FORMAT:?})"
                    ),
                ))
            }
        }
        serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(|e| Error::data(path, format!("bad checkpoint metadata: {e}")))
    }
}

/// Tensors by checkpoint name: (shape, host values).
pub type NamedTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The tensors of `net` under their checkpoint names, downloaded to the host, sorted by name.
pub fn named_tensors(net: &Network) -> Result<NamedTensors> {
    let mut out = BTreeMap::new();
    let mut put = |name: String, t: &Tensor| -> Result<()> {
        out.insert(name, (t.shape().to_vec(), t.to_vec()?));
        Ok(())
    };
    for p in &net.store.params {
        put(p.name.clone(), &p.value)?;
        if let Some(m) = p.mask() {
            put(format!("{}.mask", p.name), m)?;
        }
        if let Some(m) = &p.momentum {
            put(format!("{}.momentum", p.name), m)?;
        }
    }
    for b in &net.store.buffers {
        put(b.name.clone(), &b.value)?;
    }
    Ok(out)
}

/// `<path>.tmp`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Fault injection for crash-safety tests: with `SUPTICKETS_ABORT_AFTER_WRITE=N` set, the
/// process aborts (as `kill -9` would stop it) right after its N-th completed file write
/// (atomic writes and log appends, counted from 1). Unset, it costs one relaxed atomic add.
pub fn write_done(path: &Path) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed) + 1;
    if let Ok(v) = std::env::var("SUPTICKETS_ABORT_AFTER_WRITE") {
        if v.parse::<usize>().ok() == Some(n) {
            eprintln!(
                "SUPTICKETS_ABORT_AFTER_WRITE: aborting after write {n} ({})",
                path.display()
            );
            std::process::abort();
        }
    }
}

/// Writes `bytes` to `path` atomically: `<path>.tmp`, fsync, rename. In data-parallel
/// training only rank 0 writes: on the other ranks this does nothing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if !crate::dist::is_writer() {
        return Ok(());
    }
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    write_done(path);
    Ok(())
}

/// Saves `net` (values, masks, momenta, batch-norm statistics) and `meta` to `path` atomically.
pub fn save(path: &Path, net: &Network, meta: &CheckpointMeta) -> Result<()> {
    save_with(path, net, meta, &[])
}

/// [`save`] plus `extra` tensors (Sup-tickets state, named `sup.*`).
pub fn save_with(
    path: &Path,
    net: &Network,
    meta: &CheckpointMeta,
    extra: &[(String, Tensor)],
) -> Result<()> {
    let mut tensors = named_tensors(net)?;
    for (k, t) in extra {
        tensors.insert(k.clone(), (t.shape().to_vec(), t.to_vec()?));
    }
    if let Some((k, _)) = tensors.iter().find(|(_, (_, d))| has_non_finite(d)) {
        return Err(Error::data(
            path,
            format!("not written: tensor {k} holds NaN or infinite values (training diverged)"),
        ));
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, (shape, data))| {
            let b = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (k, shape, b)
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (k, shape, b) in &bytes {
        let v = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| Error::data(path, format!("tensor {k}: {e}")))?;
        views.push((k.as_str(), v));
    }
    let buf = safetensors::serialize(views, &Some(meta.to_map()?))
        .map_err(|e| Error::data(path, format!("cannot serialise checkpoint: {e}")))?;
    write_atomic(path, &buf)
}

/// A checkpoint read into memory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The file it came from.
    pub path: PathBuf,
    /// Its metadata.
    pub meta: CheckpointMeta,
    /// Every tensor: name → (shape, values).
    pub tensors: NamedTensors,
}

impl Checkpoint {
    /// Reads and validates a checkpoint file (errors name the file and the tensor).
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&buf).map_err(|e| {
            let why = layout_error(&buf).unwrap_or_else(|| e.to_string());
            Error::data(path, format!("not a safetensors checkpoint: {why}"))
        })?;
        let meta_map = header.metadata().clone().unwrap_or_default();
        let meta = CheckpointMeta::from_map(path, &meta_map)?;
        if meta.format_version > FORMAT_VERSION {
            return Err(Error::data(
                path,
                format!(
                    "checkpoint format version {} is newer than this build's {FORMAT_VERSION}",
                    meta.format_version
                ),
            ));
        }
        let st = SafeTensors::deserialize(&buf)
            .map_err(|e| Error::data(path, format!("corrupt safetensors file: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(Error::data(
                    path,
                    format!("tensor {name} has dtype {:?}, expected F32", view.dtype()),
                ));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            meta,
            tensors,
        })
    }

    /// Copies every tensor into `net` (on `net`'s device): values and batch-norm statistics must
    /// all be present with the right shapes; masks and momenta are restored where present (and
    /// cleared where absent). A tensor the model does not have is an error too.
    pub fn restore(&self, net: &mut Network) -> Result<()> {
        let device = net.device();
        let path = &self.path;
        if let Some((k, _)) = self
            .tensors
            .iter()
            .find(|(k, (_, d))| !k.starts_with(SUP_PREFIX) && has_non_finite(d))
        {
            return Err(Error::data(
                path,
                format!("tensor {k} holds NaN or infinite values: the run that wrote this checkpoint diverged"),
            ));
        }
        let mut used = std::collections::BTreeSet::new();
        let mut get = |name: &str, shape: &[usize], required: bool| -> Result<Option<Tensor>> {
            match self.tensors.get(name) {
                None if required => Err(Error::data(
                    path,
                    format!(
                        "checkpoint has no tensor {name} (the model needs one of shape {shape:?})"
                    ),
                )),
                None => Ok(None),
                Some((s, data)) => {
                    if s != shape {
                        return Err(Error::data(
                            path,
                            format!("tensor {name} has shape {s:?} in the checkpoint, the model needs {shape:?}"),
                        ));
                    }
                    used.insert(name.to_string());
                    Ok(Some(Tensor::from_slice(data, shape, &device)?))
                }
            }
        };
        for p in &mut net.store.params {
            let shape = p.value.shape().to_vec();
            p.value = get(&p.name, &shape, true)?.expect("required");
            p.set_mask(get(&format!("{}.mask", p.name), &shape, false)?);
            p.momentum = get(&format!("{}.momentum", p.name), &shape, false)?;
        }
        for b in &mut net.store.buffers {
            let shape = b.value.shape().to_vec();
            b.value = get(&b.name, &shape, true)?.expect("required");
        }
        if let Some(extra) = self
            .tensors
            .keys()
            .find(|k| !used.contains(*k) && !k.starts_with(SUP_PREFIX))
        {
            return Err(Error::data(
                path,
                format!(
                    "checkpoint tensor {extra} does not belong to model {} (wrong model or width?)",
                    net.arch
                ),
            ));
        }
        Ok(())
    }

    /// The Sup-tickets state tensor `name` (`sup.*`), on `device`.
    pub fn sup_tensor(&self, name: &str, device: &crate::device::Device) -> Result<Option<Tensor>> {
        match self.tensors.get(name) {
            Some((s, d)) => Ok(Some(Tensor::from_slice(d, s, device)?)),
            None => Ok(None),
        }
    }

    /// Builds the model the metadata describes and restores every tensor into it (on the CPU).
    pub fn build_network(&self) -> Result<Network> {
        let mut net = build(&self.meta.model.to_config())
            .map_err(|e| Error::data(&self.path, format!("cannot rebuild the model: {e}")))?;
        self.restore(&mut net)?;
        Ok(net)
    }
}

/// What is wrong with the safetensors layout of `buf` (an 8-byte little-endian header length,
/// a JSON header, then the tensor data), with the sizes involved; None when the layout holds.
fn layout_error(buf: &[u8]) -> Option<String> {
    let size = buf.len();
    let Some(len) = buf.get(..8) else {
        return Some(format!(
            "the file is {size} bytes, too short for the 8-byte header length"
        ));
    };
    let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    let rest = (size - 8) as u64;
    if n > rest {
        return Some(format!(
            "the header length field says {n} bytes, but the file has only {rest} bytes after it ({size} bytes in all: truncated, or not a safetensors file)"
        ));
    }
    let header: serde_json::Value = match serde_json::from_slice(&buf[8..8 + n as usize]) {
        Ok(v) => v,
        Err(e) => return Some(format!("the {n}-byte header is not valid JSON ({e})")),
    };
    let Some(entries) = header.as_object() else {
        return Some(format!("the {n}-byte header is not a JSON object"));
    };
    let need = entries
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    let data = rest - n;
    if need > data {
        return Some(format!(
            "truncated: the header lists {need} bytes of tensor data, but the file holds only {data} after its {n}-byte header ({size} bytes in all)"
        ));
    }
    (need < data).then(|| {
        format!("the header lists {need} bytes of tensor data, but the file holds {data} after its {n}-byte header ({size} bytes in all)")
    })
}

/// Reads `path` and returns the restored model (on the CPU) and the metadata.
pub fn load(path: &Path) -> Result<(Network, CheckpointMeta)> {
    let c = Checkpoint::read(path)?;
    let net = c.build_network()?;
    Ok((net, c.meta))
}
