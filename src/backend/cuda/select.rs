//! Launch wrappers of kernels/select.cu (deterministic masked top-k) and the device-side
//! drivers of [`Backend::count_nonzero`](crate::backend::Backend::count_nonzero) and
//! [`Backend::select_update`](crate::backend::Backend::select_update).
//!
//! The host logic is the one radix driver ([`crate::backend::radix::radix_update`]), which the
//! CPU reference runs with the kernels' twins: three histogram passes per group (all groups'
//! histograms of a pass come back in one 8 KiB-per-group copy), one tie-count pass and one
//! apply pass, whose per-segment counts come back as one small copy. No weight, gradient or
//! mask ever leaves the device.

use cudarc::driver::{CudaView, CudaViewMut, DeviceRepr, PushKernelArg};

use super::radix::segment_config;
use super::{check_len, cuda_err, to_i64, CudaBackend, DevBuf};
use crate::backend::cpu::select::{check_groups, group_keys};
use crate::backend::radix::{
    radix_update, segments, BufOf, RadixKeys, RadixState, Threshold, MAX_HIST_BITS,
};
use crate::backend::{SelectAction, SelectGroup, SelectKey};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

// SAFETY: `SelectKey` is `#[repr(C)]`, `Copy`, made of u64, i64, u32, u32 (24 bytes, no
// padding) and mirrored field for field by `struct SelectKey` in kernels/select.cu, so a
// pointer to one is what the kernels expect for that argument.
unsafe impl DeviceRepr for SelectKey {}

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
        let cfg = self.radix_hist_config(len);
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
        let cfg = segment_config(counts.len(), "select_count_f32")?;
        if key.score == 0 {
            check_len(score.len(), len, "select_count_f32: score")?;
        }
        let n = to_i64(len);
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
        let cfg = segment_config(g, "select_apply_f32")?;
        if action > 1 {
            return Err(Error::Cuda(format!("select_apply_f32: action {action}")));
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

/// The select family's keys over device tensors, for the radix driver: the kernels as its
/// passes.
struct SelectKernels<'b, 'g, 'a> {
    be: &'b CudaBackend,
    groups: &'g mut [SelectGroup<'a>],
    /// Per group and target: the key parameters, and whether the score is the weight.
    keys: Vec<Vec<(SelectKey, bool)>>,
    action: SelectAction,
    /// Stands in for an absent score or momentum (never read or written).
    placeholder: DevBuf,
    placeholder_m: DevBuf,
}

impl SelectKernels<'_, '_, '_> {
    /// Device views of the score (the weight when the target has none) and mask of (g, t).
    fn read_views(&self, g: usize, t: usize) -> Result<(CudaView<'_, f32>, CudaView<'_, f32>)> {
        let target = &self.groups[g].targets[t];
        let op = self.op();
        Ok((
            self.be
                .buf(target.score.unwrap_or(&*target.weight), op)?
                .view(),
            self.be.buf(target.mask, op)?.view(),
        ))
    }
}

impl RadixKeys for SelectKernels<'_, '_, '_> {
    type Mem = CudaBackend;
    fn mem(&self) -> &CudaBackend {
        self.be
    }
    fn op(&self) -> &'static str {
        "select_update"
    }
    fn groups(&self) -> usize {
        self.groups.len()
    }
    fn k(&self, g: usize) -> usize {
        self.groups[g].k
    }
    fn lens(&self, g: usize) -> Vec<usize> {
        self.groups[g]
            .targets
            .iter()
            .map(|t| t.weight.numel())
            .collect()
    }
    fn hist(
        &self,
        g: usize,
        t: usize,
        st: &RadixState,
        shift: u32,
        bits: u32,
        hist: &mut BufOf<Self>,
        at: usize,
    ) -> Result<()> {
        let (sv, mv) = self.read_views(g, t)?;
        let (key, _) = &self.keys[g][t];
        let mut h = hist.slice_mut(at..at + (1 << bits));
        let (prefix, pmask) = (st.prefix, st.prefix_mask);
        self.be
            .launch_select_hist(&sv, &mv, key, prefix, pmask, shift, bits, &mut h)
    }
    fn count(
        &self,
        g: usize,
        t: usize,
        key: u32,
        counts: &mut BufOf<Self>,
        at: usize,
    ) -> Result<()> {
        let (sv, mv) = self.read_views(g, t)?;
        let n = segments(mv.len());
        let mut c = counts.slice_mut(at..at + n);
        self.be
            .launch_select_count(&sv, &mv, &self.keys[g][t].0, key, key, &mut c)
    }
    fn apply(
        &mut self,
        g: usize,
        t: usize,
        thr: Threshold,
        tie_before: &BufOf<Self>,
        out: &mut BufOf<Self>,
        at: usize,
    ) -> Result<()> {
        let (be, op) = (self.be, self.op());
        let (key, score_is_w) = self.keys[g][t];
        let target = &mut self.groups[g].targets[t];
        let n = segments(target.weight.numel());
        let sv = match target.score {
            Some(s) => be.buf(s, op)?.view(),
            None => self.placeholder.view(),
        };
        let has_m = target.momentum.is_some();
        let mut mv = match target.momentum.as_deref_mut() {
            Some(m) => be.buf_mut(m, op)?.view_mut(),
            None => self.placeholder_m.view_mut(),
        };
        let wb = be.buf_mut(target.weight, op)?;
        let kb = be.buf_mut(target.mask, op)?;
        be.launch_select_apply(
            &sv,
            score_is_w,
            &mut wb.view_mut(),
            &mut kb.view_mut(),
            &mut mv,
            has_m,
            &key,
            thr.key,
            &tie_before.slice(at..at + n),
            thr.tie_take,
            (self.action == SelectAction::Grow) as u32,
            &mut out.slice_mut(at..at + n),
        )
    }
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
    let keys = groups.iter().map(|g| group_keys(g, action)).collect();
    let mut kernels = SelectKernels {
        be,
        groups,
        keys,
        action,
        placeholder: be.alloc(1, "select: placeholder")?,
        placeholder_m: be.alloc(1, "select: placeholder")?,
    };
    radix_update(&mut kernels, action)
}
