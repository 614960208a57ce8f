//! The one exploration step (docs/computation.md, Methods), used by SET, RigL and GraNet every ΔT
//! during training and by the Sup-tickets cycles at each cycle start:
//! 1. every taking-part layer loses k_l = ceil(p · active_l) of its active weights of smallest
//!    |w| (ties: the higher flat index goes first);
//! 2. it regrows k_l positions among ALL positions inactive after step 1 (so a weight pruned in
//!    step 1 may come straight back), by the method's criterion: |dense gradient| (RigL, GraNet,
//!    and the cycles of static and SNIP) or uniformly at random (SET);
//! 3. the new mask is applied once: a connection that was active before the step and is active
//!    after it keeps its weight and momentum ([`Regrown::Keep`], the references' behaviour:
//!    RigL's `reinit_when_same = False`, the Sup-tickets authors' code), while a connection
//!    inactive before the step starts at 0. [`Regrown::Zero`] restarts every regrown connection
//!    at 0, pruned in the same step or not (this engine's earlier behaviour).
//!
//! Frozen layers (`--dense-first-layer`) and fully dense layers (mask all ones, as ERK makes
//! small layers) do not take part: their weights, masks and momenta are left bit for bit as they
//! were. Every layer's active count is unchanged by the step.

use super::grow::{grow_gradient, grow_random};
use super::prune::prune_count;
use super::topk::{active_counts, select_layers, Plan, Scores};
use crate::backend::SelectAction;
use crate::error::{Error, Result};
use crate::nn::{ParamId, ParamStore};
use crate::tensor::Tensor;

/// What a connection pruned and regrown by the same exploration step restarts from.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Regrown {
    /// It keeps its weight and momentum (the reference code bases; the default).
    #[default]
    Keep,
    /// It restarts at weight 0 and momentum 0, like a connection that was inactive.
    Zero,
}

impl Regrown {
    /// The name used by the `--regrown` flag and the TOML key `regrown`.
    pub fn name(self) -> &'static str {
        match self {
            Regrown::Keep => "keep",
            Regrown::Zero => "zero",
        }
    }

    /// Parses `keep` or `zero`.
    pub fn parse(s: &str) -> Result<Regrown> {
        match s {
            "keep" => Ok(Regrown::Keep),
            "zero" => Ok(Regrown::Zero),
            _ => Err(Error::Config(format!(
                "--regrown: expected keep or zero, got {s:?}"
            ))),
        }
    }
}

/// The regrowth criterion of an exploration step.
#[derive(Clone, Copy, Debug)]
pub enum GrowBy<'a> {
    /// The inactive positions of largest |dense gradient| (`grads` indexed like
    /// `store.params`, computed without the mask).
    Gradient(&'a [Option<Tensor>]),
    /// Uniformly random inactive positions, deterministic for the seed.
    Random(u64),
}

/// What an exploration step changed, per maskable layer (in `maskable_ids` order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explored {
    /// Weights pruned (step 1).
    pub pruned: Vec<usize>,
    /// Positions grown (step 2): equal to `pruned`, layer by layer.
    pub grown: Vec<usize>,
}

/// Runs one exploration step with drop fraction `p` over the maskable layers of `store`;
/// `frozen[l]` (maskable-layer order; shorter slices mean "not frozen") keeps layer l out.
pub fn explore(
    store: &mut ParamStore,
    p: f64,
    grow: GrowBy<'_>,
    frozen: &[bool],
    regrown: Regrown,
) -> Result<Explored> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::Config(format!(
            "exploration drop fraction must be in [0, 1], got {p}"
        )));
    }
    let ids = store.maskable_ids();
    let active = active_counts(store)?;
    let takes_part: Vec<bool> = ids
        .iter()
        .enumerate()
        .map(|(l, &id)| {
            let prm = store.param(id);
            !frozen.get(l).copied().unwrap_or(false)
                && prm.mask().is_some()
                && active[l] < prm.value.numel()
        })
        .collect();
    let keep: Vec<usize> = active
        .iter()
        .zip(&takes_part)
        .map(|(&a, &t)| if t { a - prune_count(p, a) } else { a })
        .collect();
    let unmasked: Vec<ParamId> = ids
        .iter()
        .copied()
        .filter(|&id| store.param(id).mask().is_none())
        .collect();
    let before = match regrown {
        Regrown::Keep => Some(snapshot(store, &ids, &takes_part)?),
        Regrown::Zero => None,
    };
    let pruned = select_layers(
        store,
        Scores::Weights,
        Plan::PerLayer(&keep),
        SelectAction::Keep,
    )?;
    // The prune gives a mask-less layer an all-ones mask; it took no part, so it gets none back.
    for id in unmasked {
        store.params[id.0].set_mask(None);
    }
    let grown = match grow {
        GrowBy::Gradient(grads) => grow_gradient(store, grads, &pruned)?,
        GrowBy::Random(seed) => grow_random(store, &pruned, seed)?,
    };
    if let Some(before) = before {
        restore_survivors(store, before)?;
    }
    Ok(Explored { pruned, grown })
}

/// The state of a taking-part layer before the step: (param, weight, mask, momentum).
type Snapshot = Vec<(ParamId, Tensor, Tensor, Option<Tensor>)>;

fn snapshot(store: &ParamStore, ids: &[ParamId], takes_part: &[bool]) -> Result<Snapshot> {
    ids.iter()
        .zip(takes_part)
        .filter(|(_, &t)| t)
        .map(|(&id, _)| {
            let prm = store.param(id);
            let mask = prm.mask().cloned().expect("a taking-part layer has a mask");
            Ok((id, prm.value.clone(), mask, prm.momentum.clone()))
        })
        .collect()
}

/// Step 3 under [`Regrown::Keep`]: weight and momentum = their values before the step where the
/// connection was active both before and after it, 0 elsewhere (old ⊙ mask_before ⊙ mask_after).
fn restore_survivors(store: &mut ParamStore, before: Snapshot) -> Result<()> {
    for (id, w_old, m_before, mom_old) in before {
        let prm = &mut store.params[id.0];
        let mask_after = prm.mask().expect("the step keeps the mask");
        let both = w_old.backend().mul(&m_before, mask_after)?;
        prm.value = w_old.backend().mul(&w_old, &both)?;
        if let Some(m) = mom_old {
            prm.momentum = Some(m.backend().mul(&m, &both)?);
        }
    }
    Ok(())
}
