//! The running superposed ticket S (docs/computation.md, Sup-tickets): [`Superposer`] keeps ONE
//! extra copy of the maskable weights (plus, for CAA, one per-connection activation count of the
//! same size, and a copy of the small non-maskable parameters: biases and batch-norm scales and
//! shifts), whatever the number of tickets, beside the training weights (docs/computation.md,
//! Sup-tickets: training continues from W_k and its mask, not from S_k).
//!
//! [`Superposer::add_ticket`] averages ticket W_k into S and re-prunes S to the target count
//! by magnitude in one fused device operation per tensor
//! ([`Backend::superpose_update`](crate::backend::Backend::superpose_update): three histogram
//! passes over the averaged values, a tie count when needed, one write), so the averaged,
//! unpruned S is never materialised.
//!
//! The ultimate ticket's mask is not stored either: S holds exactly the kept values and zeros
//! elsewhere, so "the k largest |S|, ties to the lower flat index" selects exactly the kept
//! positions again (a kept position's key is at least the threshold; a pruned one is 0, whose
//! key is the smallest, and if zeros were kept the same lowest-index zeros are picked).
//! [`Superposer::ultimate`] recomputes it with the select machinery.

use crate::backend::{
    Score, SelectAction, SelectGroup, SelectTarget, SuperposeGroup, SuperposeTarget,
};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{ParamId, ParamStore};
use crate::tensor::Tensor;

pub use super::superpose_config::{
    AverageKind, Averaging, Reprune, SuperposeConfig, DEFAULT_CIMA_BETA,
};

/// One maskable tensor of the superposed ticket.
#[derive(Clone, Debug)]
struct Slot {
    id: ParamId,
    name: String,
    /// The running superposed weights.
    s: Tensor,
    /// CAA's per-connection activation counts.
    count: Option<Tensor>,
    /// True when the tensor takes part in the re-pruning (it has a mask and is not frozen); the
    /// others are averaged and stay dense.
    masked: bool,
    /// The frozen first layer: dense, but its all-ones mask is kept in the ultimate ticket.
    frozen: bool,
}

/// What one [`Superposer::add_ticket`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketStats {
    /// The ticket superposed (1..=K).
    pub ticket: usize,
    /// Positions of S kept per maskable tensor (in `maskable_ids` order; a dense tensor keeps
    /// all its elements).
    pub kept: Vec<usize>,
    /// Kept positions over all maskable elements.
    pub density: f64,
}

/// One maskable tensor of the ultimate ticket.
#[derive(Clone, Debug)]
pub struct UltimateParam {
    /// The parameter.
    pub id: ParamId,
    /// The superposed, re-pruned weights.
    pub weight: Tensor,
    /// Its 0/1 mask (`None` for a maskable tensor that was dense during training).
    pub mask: Option<Tensor>,
}

/// An exact copy of `t` that shares no storage with it (on `t`'s device); an error when the
/// device cannot hold the copy.
pub(crate) fn deep_copy(t: &Tensor) -> Result<Tensor> {
    let mut c = t.clone();
    // Copy-on-write: the storage is shared with `t`, so this copies it.
    c.storage_mut()?;
    Ok(c)
}

/// The running superposed ticket S over a store's maskable tensors, plus the average of its
/// non-maskable parameters.
#[derive(Clone, Debug)]
pub struct Superposer {
    cfg: SuperposeConfig,
    slots: Vec<Slot>,
    /// Non-maskable parameters (biases, batch-norm scale and shift), averaged densely.
    dense: Vec<(ParamId, Tensor)>,
    /// Positions kept per slot at the last re-pruning (all elements for a dense slot).
    keep: Vec<usize>,
    /// Positions kept over the masked slots at the last global re-pruning.
    global_k: usize,
    /// Tickets superposed so far, ticket 0 included.
    tickets: usize,
    device: Device,
}

impl Superposer {
    /// Starts the superposition from ticket 0, the store's weights at the end of the normal
    /// phase: S_0 = W_0 (a copy), CAA counts = W_0's mask, and a copy of the non-maskable
    /// parameters.
    pub fn new(cfg: &SuperposeConfig, store: &ParamStore) -> Result<Superposer> {
        if let Some(d) = cfg.density {
            if !(0.0..=1.0).contains(&d) {
                return Err(Error::Config(format!(
                    "Sup-tickets re-pruning density must be in [0, 1], got {d}"
                )));
            }
        }
        if let Averaging::Cima { beta } = cfg.averaging {
            if !(beta > 0.0 && beta < 1.0) {
                return Err(Error::Config(format!(
                    "--cima-beta must be in (0, 1), got {beta}"
                )));
            }
        }
        let ids = store.maskable_ids();
        if ids.is_empty() {
            return Err(Error::Config(
                "Sup-tickets: the model has no maskable (conv or linear) weights".into(),
            ));
        }
        let device = store.param(ids[0]).value.device();
        let mut slots = Vec::with_capacity(ids.len());
        for (l, &id) in ids.iter().enumerate() {
            let p = store.param(id);
            let frozen = cfg.frozen_first && l == 0;
            let count = match (cfg.averaging, p.mask()) {
                (Averaging::Caa, Some(m)) => Some(deep_copy(m)?),
                (Averaging::Caa, None) => Some(Tensor::full(p.value.shape(), 1.0, &device)?),
                _ => None,
            };
            slots.push(Slot {
                id,
                name: p.name.clone(),
                s: deep_copy(&p.value)?,
                count,
                masked: p.mask().is_some() && !frozen,
                frozen: frozen && p.mask().is_some(),
            });
        }
        let dense = store
            .params
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_maskable())
            .map(|(i, p)| Ok((ParamId(i), deep_copy(&p.value)?)))
            .collect::<Result<_>>()?;
        let mut sup = Superposer {
            cfg: *cfg,
            slots,
            dense,
            keep: Vec::new(),
            global_k: 0,
            tickets: 1,
            device,
        };
        sup.set_targets(store)?;
        Ok(sup)
    }

    /// The configuration.
    pub fn config(&self) -> &SuperposeConfig {
        &self.cfg
    }

    /// Tickets superposed so far, ticket 0 included (k + 1 after ticket k).
    pub fn tickets(&self) -> usize {
        self.tickets
    }

    /// The positions each maskable tensor keeps (layerwise: the ticket's per-layer active
    /// counts) and the global count, from `store`'s masks.
    fn set_targets(&mut self, store: &ParamStore) -> Result<()> {
        let active = crate::sparse::active_counts(store)?;
        let mut keep = Vec::with_capacity(self.slots.len());
        let (mut masked_active, mut dense_elems, mut all) = (0usize, 0usize, 0usize);
        for (slot, &a) in self.slots.iter().zip(&active) {
            let n = slot.s.numel();
            all += n;
            if slot.masked {
                masked_active += a;
                keep.push(a);
            } else {
                dense_elems += n;
                keep.push(n);
            }
        }
        let masked_total = all - dense_elems;
        self.global_k = match self.cfg.density {
            Some(d) => ((d * all as f64).round() as usize)
                .saturating_sub(dense_elems)
                .min(masked_total),
            None => masked_active,
        };
        self.keep = keep;
        Ok(())
    }

    /// Checks that `store` has the parameters S was built from.
    fn check_store(&self, store: &ParamStore) -> Result<()> {
        for slot in &self.slots {
            let p = store.params.get(slot.id.0).ok_or_else(|| {
                Error::Shape(format!(
                    "Sup-tickets: the store has no parameter {}",
                    slot.name
                ))
            })?;
            if p.name != slot.name || !p.is_maskable() {
                return Err(Error::Shape(format!(
                    "Sup-tickets: parameter {} of the ticket is {}, expected maskable {}",
                    slot.id.0, p.name, slot.name
                )));
            }
            p.value.expect_shape(
                slot.s.shape(),
                &format!("Sup-tickets: ticket weight {}", p.name),
            )?;
            if slot.masked && p.mask().is_none() {
                return Err(Error::Shape(format!(
                    "Sup-tickets: {} had a mask at ticket 0 but has none now",
                    p.name
                )));
            }
        }
        for (id, t) in &self.dense {
            let p = store.params.get(id.0).ok_or_else(|| {
                Error::Shape(format!("Sup-tickets: the store has no parameter {}", id.0))
            })?;
            p.value.expect_shape(
                t.shape(),
                &format!("Sup-tickets: ticket parameter {}", p.name),
            )?;
        }
        Ok(())
    }

    /// Superposes ticket `k` (1..=K, in order) from `store` (the training weights W_k and
    /// masks at the end of cycle k): averages it into S with the configured rule and re-prunes
    /// S to the target count, one fused device operation per tensor; averages the
    /// non-maskable parameters densely. `store` is only read: training continues from W_k.
    pub fn add_ticket(&mut self, k: usize, store: &ParamStore) -> Result<TicketStats> {
        if k != self.tickets {
            return Err(Error::Config(format!(
                "Sup-tickets: ticket {k} superposed after {} ticket(s); expected ticket {}",
                self.tickets, self.tickets
            )));
        }
        self.check_store(store)?;
        self.set_targets(store)?;
        let p = self.cfg.averaging.params(k);
        let be = self.device.backend();
        let mut targets: Vec<(usize, bool, SuperposeTarget<'_>)> = Vec::new();
        for (l, slot) in self.slots.iter_mut().enumerate() {
            let param = store.param(slot.id);
            targets.push((
                l,
                slot.masked,
                SuperposeTarget {
                    s: &mut slot.s,
                    w: &param.value,
                    mask: param.mask(),
                    count: slot.count.as_mut(),
                },
            ));
        }
        let mut layers: Vec<Vec<usize>> = Vec::new();
        let mut groups: Vec<SuperposeGroup<'_>> = Vec::new();
        let (masked, dense): (Vec<_>, Vec<_>) = targets.into_iter().partition(|t| t.1);
        match self.cfg.reprune {
            Reprune::Global => {
                if !masked.is_empty() {
                    layers.push(masked.iter().map(|t| t.0).collect());
                    groups.push(SuperposeGroup {
                        targets: masked.into_iter().map(|t| t.2).collect(),
                        k: self.global_k,
                    });
                }
            }
            Reprune::Layerwise => {
                for (l, _, t) in masked {
                    layers.push(vec![l]);
                    groups.push(SuperposeGroup {
                        targets: vec![t],
                        k: self.keep[l],
                    });
                }
            }
        }
        // Dense maskable tensors: averaged, every position kept.
        for (l, _, t) in dense {
            layers.push(vec![l]);
            let n = t.s.numel();
            groups.push(SuperposeGroup {
                targets: vec![t],
                k: n,
            });
        }
        let kept = be.superpose_update(&mut groups, &p)?;
        drop(groups);
        let mut per_layer = vec![0usize; self.slots.len()];
        for (ls, ks) in layers.iter().zip(&kept) {
            for (&l, &c) in ls.iter().zip(ks) {
                per_layer[l] = c;
            }
        }
        // The non-maskable parameters.
        let (a_w, b_s) = self.cfg.averaging.dense_coefficients(k);
        for (id, t) in &mut self.dense {
            be.axpby(a_w, &store.param(*id).value, b_s, t)?;
        }
        self.tickets += 1;
        let total: usize = self.slots.iter().map(|s| s.s.numel()).sum();
        Ok(TicketStats {
            ticket: k,
            density: per_layer.iter().sum::<usize>() as f64 / total.max(1) as f64,
            kept: per_layer,
        })
    }

    /// The ultimate ticket's maskable tensors (S_K after the last [`Superposer::add_ticket`]):
    /// the re-pruned weights and their masks, recomputed as the top-k of |S| with the counts
    /// of the last re-pruning (see the module doc). Shares S's storage until either is
    /// written.
    pub fn ultimate(&self) -> Result<Vec<UltimateParam>> {
        let mut weights: Vec<Tensor> = self.slots.iter().map(|s| s.s.clone()).collect();
        let mut masks: Vec<Option<Tensor>> = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            masks.push(if s.masked || s.frozen {
                Some(Tensor::full(s.s.shape(), 1.0, &self.device)?)
            } else {
                None
            });
        }
        {
            let mut targets: Vec<(usize, SelectTarget<'_>)> = Vec::new();
            for (l, (w, m)) in weights.iter_mut().zip(masks.iter_mut()).enumerate() {
                if !self.slots[l].masked {
                    continue;
                }
                if let Some(m) = m.as_mut() {
                    targets.push((
                        l,
                        SelectTarget {
                            score: None,
                            weight: w,
                            mask: m,
                            momentum: None,
                        },
                    ));
                }
            }
            let mut groups: Vec<SelectGroup<'_>> = match self.cfg.reprune {
                Reprune::Global if !targets.is_empty() => vec![SelectGroup {
                    targets: targets.into_iter().map(|t| t.1).collect(),
                    k: self.global_k,
                    score: Score::Abs,
                }],
                Reprune::Global => vec![],
                Reprune::Layerwise => targets
                    .into_iter()
                    .map(|(l, t)| SelectGroup {
                        targets: vec![t],
                        k: self.keep[l],
                        score: Score::Abs,
                    })
                    .collect(),
            };
            self.device
                .backend()
                .select_update(&mut groups, SelectAction::Keep)?;
        }
        Ok(self
            .slots
            .iter()
            .zip(weights.into_iter().zip(masks))
            .map(|(s, (weight, mask))| UltimateParam {
                id: s.id,
                weight,
                mask,
            })
            .collect())
    }

    /// The averaged non-maskable parameters (biases, batch-norm scale and shift).
    pub fn dense_params(&self) -> &[(ParamId, Tensor)] {
        &self.dense
    }

    /// Writes the ultimate ticket into `store` (a store of the same model, e.g. the training
    /// store once training is over, or a clone of it): maskable weights and masks from
    /// [`Superposer::ultimate`] (momentum buffers dropped) and the averaged non-maskable
    /// parameters. Batch-norm statistics are not touched: see [`super::bn`].
    pub fn apply_to(&self, store: &mut ParamStore) -> Result<()> {
        self.check_store(store)?;
        for u in self.ultimate()? {
            let p = &mut store.params[u.id.0];
            p.value = u.weight;
            p.set_mask(u.mask);
            p.momentum = None;
        }
        for (id, t) in &self.dense {
            store.params[id.0].value = t.clone();
        }
        Ok(())
    }

    /// A copy of `base` (sharing its storage until written) holding the ultimate ticket; see
    /// [`Superposer::apply_to`].
    pub fn ultimate_store(&self, base: &ParamStore) -> Result<ParamStore> {
        let mut s = base.clone();
        self.apply_to(&mut s)?;
        Ok(s)
    }

    /// The running state as named tensors for a checkpoint: `sup.s.<name>` (S),
    /// `sup.count.<name>` (CAA counts) and `sup.dense.<name>` (averaged non-maskable
    /// parameters), names from `store` (the model S was built from).
    pub fn state_tensors(&self, store: &ParamStore) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for slot in &self.slots {
            v.push((format!("sup.s.{}", slot.name), slot.s.clone()));
            if let Some(c) = &slot.count {
                v.push((format!("sup.count.{}", slot.name), c.clone()));
            }
        }
        for (id, t) in &self.dense {
            v.push((format!("sup.dense.{}", store.param(*id).name), t.clone()));
        }
        v
    }

    /// Restores the state [`Superposer::state_tensors`] saved, after `tickets` tickets: `get`
    /// returns the named tensor (on this superposer's device), None when missing (an error).
    pub fn load_state(
        &mut self,
        store: &ParamStore,
        tickets: usize,
        get: &mut dyn FnMut(&str) -> Result<Option<Tensor>>,
    ) -> Result<()> {
        let mut need = |name: String| -> Result<Tensor> {
            get(&name)?.ok_or_else(|| {
                Error::Config(format!(
                    "the checkpoint has no Sup-tickets state tensor {name}"
                ))
            })
        };
        for slot in &mut self.slots {
            slot.s = need(format!("sup.s.{}", slot.name))?;
            if slot.count.is_some() {
                slot.count = Some(need(format!("sup.count.{}", slot.name))?);
            }
        }
        for (id, t) in &mut self.dense {
            *t = need(format!("sup.dense.{}", store.param(*id).name))?;
        }
        self.tickets = tickets;
        self.set_targets(store)
    }

    /// Bytes of device (or host) memory the superposer holds: S, the CAA counts and the
    /// non-maskable copy. Independent of the number of tickets.
    pub fn extra_bytes(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        let maskable: usize = self
            .slots
            .iter()
            .map(|s| s.s.numel() + s.count.as_ref().map_or(0, |c| c.numel()))
            .sum();
        let dense: usize = self.dense.iter().map(|(_, t)| t.numel()).sum();
        f * (maskable + dense)
    }
}
