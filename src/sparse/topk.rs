//! The one primitive under every prune and grow step (docs/computation.md, Methods): a
//! deterministic masked top-k over a model's maskable tensors, run by the backend the tensors live
//! on ([`Backend::select_update`](crate::backend::Backend::select_update)).
//!
//! "The k best" are ordered by (score descending, flat index ascending), so ties go to the lower
//! flat index on every backend; the flat index of a global selection is the offset in the
//! concatenation of the maskable tensors in store order. [`topk_reference`] is the same
//! selection by sorting, for tests and tiny inputs.

use crate::backend::{Score, SelectAction, SelectGroup, SelectTarget};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// What a selection scores each position by.
#[derive(Clone, Copy, Debug)]
pub enum Scores<'a> {
    /// |w| of the weight itself (magnitude pruning).
    Weights,
    /// |t| of one tensor per parameter, indexed like `store.params` (e.g. the dense gradients
    /// of [`StepOutput::grads`](crate::nn::StepOutput), or the momentum buffers).
    Tensors(&'a [Option<Tensor>]),
    /// A uniform random score from the seed (layer l of a per-layer selection uses its own
    /// stream derived from the seed and l).
    Random(u64),
}

/// How many positions to select, and over which tensors.
#[derive(Clone, Copy, Debug)]
pub enum Plan<'a> {
    /// One top-k per maskable layer, k given per layer (in `maskable_ids` order).
    PerLayer(&'a [usize]),
    /// One top-k over all maskable tensors together.
    Global(usize),
}

/// The device of the store's maskable tensors (the CPU for a store without any).
pub fn store_device(store: &ParamStore) -> Device {
    store
        .params
        .iter()
        .find(|p| p.is_maskable())
        .map(|p| p.value.device())
        .unwrap_or(Device::Cpu)
}

/// Active (mask ≠ 0) positions of every maskable tensor, in `maskable_ids` order; a tensor
/// without a mask counts as fully active. One reduction on the device; only counts come back.
pub fn active_counts(store: &ParamStore) -> Result<Vec<usize>> {
    let ids = store.maskable_ids();
    let masks: Vec<&Tensor> = ids
        .iter()
        .filter_map(|&id| store.param(id).mask())
        .collect();
    let device = store_device(store);
    let mut counted = device.backend().count_nonzero(&masks)?.into_iter();
    Ok(ids
        .iter()
        .map(|&id| {
            let p = store.param(id);
            match p.mask() {
                Some(_) => counted.next().expect("one count per mask"),
                None => p.value.numel(),
            }
        })
        .collect())
}

/// A per-layer stream of the random score: layer `l` of `seed`.
pub fn layer_seed(seed: u64, l: usize) -> u64 {
    crate::rng::Rng::derive(seed, 0x5E1E_C700 + l as u64).next_u64()
}

/// Runs one masked top-k over the store's maskable tensors and applies `action` (keep = prune
/// the rest of the active positions; grow = activate the selection with weight and momentum 0).
/// Returns the positions changed per maskable layer. With [`SelectAction::Keep`], a maskable
/// tensor without a mask first gets an all-ones mask; with [`SelectAction::Grow`] it has
/// nothing to grow (its k must be 0).
pub fn select_layers(
    store: &mut ParamStore,
    scores: Scores<'_>,
    plan: Plan<'_>,
    action: SelectAction,
) -> Result<Vec<usize>> {
    let ids = store.maskable_ids();
    check_lengths(store, ids.len(), scores, plan)?;
    let device = store_device(store);
    prepare_masks(store, &ids, plan, action)?;
    let targets = collect_targets(store, scores, plan)?;
    run_select(&device, targets, ids.len(), scores, plan, action)
}

/// Errors unless a per-layer plan has one count per maskable tensor and tensor scores have one
/// entry per parameter.
fn check_lengths(
    store: &ParamStore,
    maskable: usize,
    scores: Scores<'_>,
    plan: Plan<'_>,
) -> Result<()> {
    if let Plan::PerLayer(ks) = plan {
        if ks.len() != maskable {
            return Err(Error::Shape(format!(
                "select: {} per-layer counts for {} maskable tensors",
                ks.len(),
                maskable
            )));
        }
    }
    if let Scores::Tensors(t) = scores {
        if t.len() != store.params.len() {
            return Err(Error::Shape(format!(
                "select: {} score tensors for {} parameters",
                t.len(),
                store.params.len()
            )));
        }
    }
    Ok(())
}

/// Gives every unmasked maskable tensor an all-ones mask (keep), or checks there is nothing to
/// grow there (grow).
fn prepare_masks(
    store: &mut ParamStore,
    ids: &[crate::nn::ParamId],
    plan: Plan<'_>,
    action: SelectAction,
) -> Result<()> {
    for (l, &id) in ids.iter().enumerate() {
        let p = &mut store.params[id.0];
        if p.mask().is_none() {
            match action {
                SelectAction::Keep => {
                    let full = Tensor::full(p.value.shape(), 1.0, &p.value.device())?;
                    p.set_mask(Some(full));
                }
                SelectAction::Grow => {
                    if matches!(plan, Plan::PerLayer(ks) if ks[l] > 0) {
                        return Err(Error::Config(format!(
                            "grow: {} has no mask (it is dense), so nothing can grow there",
                            p.name
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// (maskable layer index, target) for every layer that takes part: masked, and with a score
/// tensor when scored by tensors (a missing one is an error unless that layer selects nothing).
fn collect_targets<'a>(
    store: &'a mut ParamStore,
    scores: Scores<'a>,
    plan: Plan<'_>,
) -> Result<Vec<(usize, SelectTarget<'a>)>> {
    let mut targets: Vec<(usize, SelectTarget<'a>)> = Vec::new();
    let mut l = 0;
    for (pi, p) in store.params.iter_mut().enumerate() {
        if !p.is_maskable() {
            continue;
        }
        let layer = l;
        l += 1;
        if p.mask().is_none() {
            continue;
        }
        let name = p.name.clone();
        let (value, mask, momentum) = p.parts_mut();
        let mask = mask.expect("checked above");
        let score = match scores {
            Scores::Tensors(t) => match &t[pi] {
                Some(s) => Some(s),
                None => {
                    let needed = match plan {
                        Plan::PerLayer(ks) => ks[layer] > 0,
                        Plan::Global(_) => true,
                    };
                    if needed {
                        return Err(Error::Config(format!(
                            "select: no score tensor (gradient) for {name}"
                        )));
                    }
                    continue;
                }
            },
            _ => None,
        };
        targets.push((
            layer,
            SelectTarget {
                score,
                weight: value,
                mask,
                momentum,
            },
        ));
    }
    Ok(targets)
}

/// Groups the targets as the plan says (one group, or one per layer), runs the backend's
/// selection and returns the positions changed per maskable layer (`layers` of them).
fn run_select(
    device: &Device,
    targets: Vec<(usize, SelectTarget<'_>)>,
    layers: usize,
    scores: Scores<'_>,
    plan: Plan<'_>,
    action: SelectAction,
) -> Result<Vec<usize>> {
    let score_of = |layer: usize| match scores {
        Scores::Random(seed) => Score::Hash(match plan {
            Plan::PerLayer(_) => layer_seed(seed, layer),
            Plan::Global(_) => seed,
        }),
        _ => Score::Abs,
    };
    let mut out = vec![0usize; layers];
    let taking_part: Vec<usize> = targets.iter().map(|(l, _)| *l).collect();
    match plan {
        Plan::Global(k) => {
            let mut groups = [SelectGroup {
                targets: targets.into_iter().map(|(_, t)| t).collect(),
                k,
                score: score_of(0),
            }];
            let changed = device.backend().select_update(&mut groups, action)?;
            for (l, c) in taking_part.into_iter().zip(&changed[0]) {
                out[l] = *c;
            }
        }
        Plan::PerLayer(ks) => {
            let mut groups: Vec<SelectGroup<'_>> = targets
                .into_iter()
                .map(|(l, t)| SelectGroup {
                    targets: vec![t],
                    k: ks[l],
                    score: score_of(l),
                })
                .collect();
            let changed = device.backend().select_update(&mut groups, action)?;
            for (l, c) in taking_part.into_iter().zip(&changed) {
                out[l] = c[0];
            }
        }
    }
    Ok(out)
}

/// The selection by sorting (reference for tests and tiny inputs): the `k` eligible positions
/// with the largest `scores` (compared as |score| bit patterns, as the kernels do), ties to the
/// lower index. Panics if fewer than `k` positions are eligible.
pub fn topk_reference(scores: &[f32], eligible: &[bool], k: usize) -> Vec<bool> {
    assert_eq!(
        scores.len(),
        eligible.len(),
        "topk_reference: lengths differ"
    );
    let key = |i: usize| scores[i].to_bits() & 0x7fff_ffff;
    let mut idx: Vec<usize> = (0..scores.len()).filter(|&i| eligible[i]).collect();
    assert!(
        k <= idx.len(),
        "topk_reference: k = {k} > {} eligible",
        idx.len()
    );
    idx.sort_by(|&a, &b| key(b).cmp(&key(a)).then(a.cmp(&b)));
    let mut sel = vec![false; scores.len()];
    for &i in &idx[..k] {
        sel[i] = true;
    }
    sel
}
