//! Launch wrappers of kernels/select.cu (deterministic masked top-k) and the device-side
//! drivers of [`Backend::count_nonzero`](crate::backend::Backend::count_nonzero) and
//! [`Backend::select_update`](crate::backend::Backend::select_update).
//!
//! The host logic is the CPU reference's (`cpu::select`): three radix histogram passes per
//! group (all groups' histograms of a pass come back in one 8 KiB-per-group copy), one tie
//! count pass and one apply pass, whose per-segment counts come back as one small copy. No
//! weight, gradient or mask ever leaves the device.

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg};

use super::{check_len, cuda_err, to_i64, CudaBackend, BLOCK};
use crate::backend::cpu::select::{
    check_groups, group_keys, segment_tie_offsets, segments, RadixState, Threshold, MAX_HIST_BITS,
    RADIX_PASSES,
};
use crate::backend::{SelectAction, SelectGroup, SelectKey};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

// SAFETY: `SelectKey` is `#[repr(C)]`, `Copy`, made of u64, i64, u32, u32 (24 bytes, no
// padding) and mirrored field for field by `struct SelectKey` in kernels/select.cu, so a
// pointer to one is what the kernels expect for that argument.
unsafe impl DeviceRepr for SelectKey {}

/// Bins reserved per group in the batched histogram buffer.
const HIST_SLOT: usize = 1 << MAX_HIST_BITS;

impl CudaBackend {
    /// `select_hist_f32` over `mask.len()` elements into `hist` (2^bits bins, accumulated).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_select_hist(
        &self,
        score: &CudaView<'_, f32>,
        mask: &CudaView<'_, f32>,
        key: &SelectKey,
        prefix: u32,
        prefix_mask: u32,
        shift: u32,
        bits: u32,
        hist: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let len = mask.len();
        if !(1..=MAX_HIST_BITS).contains(&bits) || shift > 31 {
            return Err(Error::Cuda(format!(
                "select_hist_f32: bad digit (shift {shift}, bits {bits})"
            )));
        }
        check_len(hist.len(), 1 << bits, "select_hist_f32: hist")?;
        if key.score == 0 {
            check_len(score.len(), len, "select_hist_f32: score")?;
        }
        if len == 0 {
            return Ok(());
        }
        let n = to_i64(len);
        let (shift, bits) = (shift as i32, bits as i32);
        let blocks = len
            .div_ceil(BLOCK as usize * 8)
            .clamp(1, self.sm_count as usize * 4);
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let f = self.loader.function("select_hist_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(score)
            .arg(mask)
            .arg(key)
            .arg(&prefix)
            .arg(&prefix_mask);
        l.arg(&shift).arg(&bits).arg(hist).arg(&n);
        // SAFETY: arguments match `select_hist_f32(const float*, const float*, SelectKey,
        // unsigned, unsigned, int, int, unsigned*, i64)`; mask (and score unless the key is a
        // hash, which never reads it) hold `len` elements, hist holds 2^bits ≤ 2048 bins.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch select_hist_f32"))?;
        Ok(())
    }

    /// `select_count_f32` with one block per element of `counts` (the segments).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_select_count(
        &self,
        score: &CudaView<'_, f32>,
        mask: &CudaView<'_, f32>,
        key: &SelectKey,
        lo: u32,
        hi: u32,
        counts: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let len = mask.len();
        let g = counts.len();
        if !(1..=65_535).contains(&g) {
            return Err(Error::Cuda(format!(
                "select_count_f32: {g} segments (1..=65535 allowed)"
            )));
        }
        if key.score == 0 {
            check_len(score.len(), len, "select_count_f32: score")?;
        }
        let n = to_i64(len);
        let cfg = LaunchConfig {
            grid_dim: (g as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let f = self.loader.function("select_count_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(score)
            .arg(mask)
            .arg(key)
            .arg(&lo)
            .arg(&hi)
            .arg(counts)
            .arg(&n);
        // SAFETY: arguments match `select_count_f32(const float*, const float*, SelectKey,
        // unsigned, unsigned, unsigned*, i64)`; mask (and score unless hashed) hold `len`
        // elements and block b < g writes counts[b] only.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch select_count_f32"))?;
        Ok(())
    }

    /// `select_apply_f32` with one block per element of `changed` (the segments). With
    /// `score_is_w` the scores are read from `w` and `score` is not read; `m` is written only
    /// with `has_m`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_select_apply(
        &self,
        score: &CudaView<'_, f32>,
        score_is_w: bool,
        w: &mut CudaViewMut<'_, f32>,
        mask: &mut CudaViewMut<'_, f32>,
        m: &mut CudaViewMut<'_, f32>,
        has_m: bool,
        key: &SelectKey,
        t: u32,
        tie_before: &CudaView<'_, u32>,
        tie_take: u32,
        action: u32,
        changed: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let len = w.len();
        let g = changed.len();
        if !(1..=65_535).contains(&g) || action > 1 {
            return Err(Error::Cuda(format!(
                "select_apply_f32: {g} segments (1..=65535 allowed), action {action}"
            )));
        }
        check_len(mask.len(), len, "select_apply_f32: mask")?;
        check_len(tie_before.len(), g, "select_apply_f32: tie_before")?;
        if key.score == 0 && !score_is_w {
            check_len(score.len(), len, "select_apply_f32: score")?;
        }
        if has_m {
            check_len(m.len(), len, "select_apply_f32: momentum")?;
        }
        let n = to_i64(len);
        let (score_is_w, has_m, action) = (score_is_w as i32, has_m as i32, action as i32);
        let cfg = LaunchConfig {
            grid_dim: (g as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let f = self.loader.function("select_apply_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(score)
            .arg(w)
            .arg(mask)
            .arg(m)
            .arg(&score_is_w)
            .arg(&has_m);
        l.arg(key)
            .arg(&t)
            .arg(tie_before)
            .arg(&tie_take)
            .arg(&action);
        l.arg(changed).arg(&n);
        // SAFETY: arguments match `select_apply_f32(const float*, float*, float*, float*, int,
        // int, SelectKey, unsigned, const unsigned*, unsigned, int, unsigned*, i64)`; w and
        // mask hold `len` elements, score too unless unread (hash key or score_is_w), m too
        // unless has_m = 0 (then never touched); tie_before and changed hold g entries, one per
        // block.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch select_apply_f32"))?;
        Ok(())
    }

    /// A zeroed u32 device buffer of at least one element.
    pub(super) fn alloc_u32(&self, len: usize, what: &str) -> Result<CudaSlice<u32>> {
        self.stream
            .alloc_zeros::<u32>(len.max(1))
            .map_err(cuda_err(format!("{what}: allocate {len} u32")))
    }

    /// Copies u32 host data to a new device buffer (one element at least).
    pub(super) fn upload_u32(&self, data: &[u32], what: &str) -> Result<CudaSlice<u32>> {
        if data.is_empty() {
            return self.alloc_u32(0, what);
        }
        self.stream
            .clone_htod(data)
            .map_err(cuda_err(format!("{what}: upload")))
    }

    /// Copies the first `len` elements of a u32 device buffer to the host.
    pub(super) fn download_u32(
        &self,
        buf: &CudaSlice<u32>,
        len: usize,
        what: &str,
    ) -> Result<Vec<u32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.stream
            .clone_dtoh(&buf.slice(..len))
            .map_err(cuda_err(format!("{what}: download")))
    }

    /// Runs the CPU twin's `select_hist_f32` on device tensors: `hist` (host, 2^bits bins) is
    /// uploaded, accumulated into on the device and copied back.
    #[allow(clippy::too_many_arguments)]
    pub fn select_hist_f32(
        &self,
        score: &Tensor,
        mask: &Tensor,
        key: &SelectKey,
        prefix: u32,
        prefix_mask: u32,
        shift: u32,
        bits: u32,
        hist: &mut [u32],
    ) -> Result<()> {
        mask.expect_shape(score.shape(), "select_hist_f32: mask (against score)")?;
        let sv = self.buf(score, "select_hist_f32: score")?.view();
        let mv = self.buf(mask, "select_hist_f32: mask")?.view();
        let mut h = self.upload_u32(hist, "select_hist_f32: hist")?;
        let nb = hist.len();
        self.launch_select_hist(
            &sv,
            &mv,
            key,
            prefix,
            prefix_mask,
            shift,
            bits,
            &mut h.slice_mut(..nb),
        )?;
        hist.copy_from_slice(&self.download_u32(&h, nb, "select_hist_f32: hist")?);
        Ok(())
    }

    /// Runs the CPU twin's `select_count_f32` on device tensors (`counts.len()` segments).
    #[allow(clippy::too_many_arguments)]
    pub fn select_count_f32(
        &self,
        score: &Tensor,
        mask: &Tensor,
        key: &SelectKey,
        lo: u32,
        hi: u32,
        counts: &mut [u32],
    ) -> Result<()> {
        mask.expect_shape(score.shape(), "select_count_f32: mask (against score)")?;
        let sv = self.buf(score, "select_count_f32: score")?.view();
        let mv = self.buf(mask, "select_count_f32: mask")?.view();
        let g = counts.len();
        let mut c = self.alloc_u32(g, "select_count_f32: counts")?;
        self.launch_select_count(&sv, &mv, key, lo, hi, &mut c.slice_mut(..g))?;
        counts.copy_from_slice(&self.download_u32(&c, g, "select_count_f32: counts")?);
        Ok(())
    }

    /// Runs the CPU twin's `select_apply_f32` on device tensors (`changed.len()` segments).
    #[allow(clippy::too_many_arguments)]
    pub fn select_apply_f32(
        &self,
        score: Option<&Tensor>,
        w: &mut Tensor,
        mask: &mut Tensor,
        m: Option<&mut Tensor>,
        key: &SelectKey,
        t: u32,
        tie_before: &[u32],
        tie_take: u32,
        action: u32,
        changed: &mut [u32],
    ) -> Result<()> {
        let shape = w.shape().to_vec();
        mask.expect_shape(&shape, "select_apply_f32: mask (against w)")?;
        if let Some(s) = score {
            s.expect_shape(&shape, "select_apply_f32: score (against w)")?;
        }
        let g = changed.len();
        if tie_before.len() != g {
            return Err(Error::Shape(format!(
                "select_apply_f32: {} tie offsets for {g} segments",
                tie_before.len()
            )));
        }
        let mut dummy = self.alloc(1, "select_apply_f32: placeholder")?;
        let dummy_score = self.alloc(1, "select_apply_f32: placeholder")?;
        let sv = match score {
            Some(s) => self.buf(s, "select_apply_f32: score")?.view(),
            None => dummy_score.view(),
        };
        let tb = self.upload_u32(tie_before, "select_apply_f32: tie_before")?;
        let mut ch = self.alloc_u32(g, "select_apply_f32: changed")?;
        let has_m = m.is_some();
        let mut mb = match m {
            Some(m) => {
                m.expect_shape(&shape, "select_apply_f32: m (against w)")?;
                self.buf_mut(m, "select_apply_f32: m")?.view_mut()
            }
            None => dummy.view_mut(),
        };
        let wb = self.buf_mut(w, "select_apply_f32: w")?;
        let kb = self.buf_mut(mask, "select_apply_f32: mask")?;
        self.launch_select_apply(
            &sv,
            score.is_none(),
            &mut wb.view_mut(),
            &mut kb.view_mut(),
            &mut mb,
            has_m,
            key,
            t,
            &tb.slice(..g),
            tie_take,
            action,
            &mut ch.slice_mut(..g),
        )?;
        changed.copy_from_slice(&self.download_u32(&ch, g, "select_apply_f32: changed")?);
        Ok(())
    }
}

/// Number of nonzero entries of each tensor: `select_count_f32` with every position eligible
/// and keys in [2, u32::MAX] (|x| > 0 or NaN), one small copy back for all tensors.
pub(super) fn count_nonzero(be: &CudaBackend, xs: &[&Tensor]) -> Result<Vec<usize>> {
    let segs: Vec<usize> = xs.iter().map(|x| segments(x.numel())).collect();
    let total: usize = segs.iter().sum();
    let mut counts = be.alloc_u32(total, "count_nonzero: counts")?;
    let key = SelectKey {
        seed: 0,
        base: 0,
        score: 0,
        eligible: 0,
    };
    let mut at = 0;
    for (i, (x, &g)) in xs.iter().zip(&segs).enumerate() {
        let v = be.buf(x, &format!("count_nonzero: tensor {i}"))?.view();
        if x.numel() > 0 {
            be.launch_select_count(&v, &v, &key, 2, u32::MAX, &mut counts.slice_mut(at..at + g))?;
        }
        at += g;
    }
    let host = be.download_u32(&counts, total, "count_nonzero: counts")?;
    let mut at = 0;
    Ok(segs
        .iter()
        .map(|&g| {
            let n = host[at..at + g].iter().map(|&c| c as usize).sum();
            at += g;
            n
        })
        .collect())
}

/// The deterministic masked top-k of every group on the device (see the module doc).
pub(super) fn select_update(
    be: &CudaBackend,
    groups: &mut [SelectGroup<'_>],
    action: SelectAction,
) -> Result<Vec<Vec<usize>>> {
    let op = "select_update";
    check_groups(groups)?;
    for (gi, g) in groups.iter().enumerate() {
        for (ti, t) in g.targets.iter().enumerate() {
            let what = |n: &str| format!("{op}: group {gi}, target {ti}: {n}");
            be.buf(t.weight, &what("weight"))?;
            be.buf(t.mask, &what("mask"))?;
            if let Some(s) = t.score {
                be.buf(s, &what("score"))?;
            }
            if let Some(m) = &t.momentum {
                be.buf(m, &what("momentum"))?;
            }
        }
    }
    let keys: Vec<Vec<(SelectKey, bool)>> = groups.iter().map(|g| group_keys(g, action)).collect();
    let grow = action == SelectAction::Grow;
    // Groups with nothing to do: growing zero positions.
    let skip: Vec<bool> = groups.iter().map(|g| grow && g.k == 0).collect();

    // 1. Radix passes, every selecting group at once; one histogram copy per pass.
    let selecting: Vec<usize> = (0..groups.len()).filter(|&g| groups[g].k > 0).collect();
    let mut states: Vec<RadixState> = groups.iter().map(|g| RadixState::new(g.k)).collect();
    if !selecting.is_empty() {
        let slots = selecting.len() * HIST_SLOT;
        let mut hist = be.alloc_u32(slots, "select: histograms")?;
        for (shift, bits) in RADIX_PASSES {
            be.stream
                .memset_zeros(&mut hist)
                .map_err(cuda_err("select: clear histograms"))?;
            for (slot, &gi) in selecting.iter().enumerate() {
                let st = states[gi];
                for (t, (key, _)) in groups[gi].targets.iter().zip(&keys[gi]) {
                    let sv = be.buf(t.score.unwrap_or(&*t.weight), op)?.view();
                    let mv = be.buf(t.mask, op)?.view();
                    let at = slot * HIST_SLOT;
                    be.launch_select_hist(
                        &sv,
                        &mv,
                        key,
                        st.prefix,
                        st.prefix_mask,
                        shift,
                        bits,
                        &mut hist.slice_mut(at..at + (1 << bits)),
                    )?;
                }
            }
            let h = be.download_u32(&hist, slots, "select: histograms")?;
            for (slot, &gi) in selecting.iter().enumerate() {
                let at = slot * HIST_SLOT;
                states[gi]
                    .narrow(&h[at..at + (1 << bits)], shift)
                    .map_err(|e| Error::Shape(format!("{op}: group {gi}: {e}")))?;
            }
        }
    }
    let mut thresholds = Vec::with_capacity(groups.len());
    for (gi, g) in groups.iter().enumerate() {
        thresholds.push(if g.k == 0 {
            Threshold::NONE
        } else {
            states[gi]
                .threshold(g.k, action)
                .map_err(|e| Error::Shape(format!("{op}: group {gi}: {e}")))?
        });
    }

    // 2. Tie counts per segment (only where some but not all ties are taken), one copy back.
    let segs: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| {
            g.targets
                .iter()
                .map(|t| segments(t.weight.numel()))
                .collect()
        })
        .collect();
    let total: usize = segs.iter().flatten().sum();
    let mut counts = be.alloc_u32(total, "select: tie counts")?;
    let mut any_ties = false;
    let mut at = 0;
    for (gi, g) in groups.iter().enumerate() {
        let thr = thresholds[gi];
        for ((t, (key, _)), &n) in g.targets.iter().zip(&keys[gi]).zip(&segs[gi]) {
            if thr.tie_take > 0 && thr.tie_take < u32::MAX && !skip[gi] && t.weight.numel() > 0 {
                let sv = be.buf(t.score.unwrap_or(&*t.weight), op)?.view();
                let mv = be.buf(t.mask, op)?.view();
                be.launch_select_count(
                    &sv,
                    &mv,
                    key,
                    thr.key,
                    thr.key,
                    &mut counts.slice_mut(at..at + n),
                )?;
                any_ties = true;
            }
            at += n;
        }
    }
    let host_counts = if any_ties {
        be.download_u32(&counts, total, "select: tie counts")?
    } else {
        vec![0; total]
    };
    let before = segment_tie_offsets(&segs, &host_counts);
    let before = be.upload_u32(&before, "select: tie offsets")?;

    // 3. Apply, one copy of the per-segment change counts back.
    let mut changed = be.alloc_u32(total, "select: change counts")?;
    let mut dummy = be.alloc(1, "select: placeholder")?;
    let dummy_score = be.alloc(1, "select: placeholder")?;
    let mut at = 0;
    for (gi, g) in groups.iter_mut().enumerate() {
        let thr = thresholds[gi];
        for ((t, (key, score_is_w)), &n) in g.targets.iter_mut().zip(&keys[gi]).zip(&segs[gi]) {
            if !skip[gi] && t.weight.numel() > 0 {
                let sv = match t.score {
                    Some(s) => be.buf(s, op)?.view(),
                    None => dummy_score.view(),
                };
                let has_m = t.momentum.is_some();
                let mut mv = match t.momentum.as_deref_mut() {
                    Some(m) => be.buf_mut(m, op)?.view_mut(),
                    None => dummy.view_mut(),
                };
                let wb = be.buf_mut(t.weight, op)?;
                let kb = be.buf_mut(t.mask, op)?;
                be.launch_select_apply(
                    &sv,
                    *score_is_w,
                    &mut wb.view_mut(),
                    &mut kb.view_mut(),
                    &mut mv,
                    has_m,
                    key,
                    thr.key,
                    &before.slice(at..at + n),
                    thr.tie_take,
                    grow as u32,
                    &mut changed.slice_mut(at..at + n),
                )?;
            }
            at += n;
        }
    }
    let host_changed = be.download_u32(&changed, total, "select: change counts")?;
    let mut at = 0;
    Ok(segs
        .iter()
        .map(|s| {
            s.iter()
                .map(|&n| {
                    let c = host_changed[at..at + n].iter().map(|&c| c as usize).sum();
                    at += n;
                    c
                })
                .collect()
        })
        .collect())
}
