//! Launch wrappers of kernels/superpose.cu (fused Sup-tickets averaging and re-pruning) and the
//! device-side driver of
//! [`Backend::superpose_update`](crate::backend::Backend::superpose_update).
//!
//! The host logic is the one radix driver ([`crate::backend::radix::radix_update`]), which the
//! CPU backend runs with the kernels' twins: three histogram passes per group over the
//! averaged values (all groups' histograms of a pass come back in one 8 KiB-per-group copy),
//! one tie-count pass when the ties at the threshold are split, and one fused apply pass that
//! writes S and the CAA counts, whose per-segment kept counts come back as one small copy. No weight, mask or count ever
//! leaves the device, and the averaged values are never stored before the last pass.

use cudarc::driver::{CudaView, CudaViewMut, DeviceRepr, PushKernelArg};

use super::radix::segment_config;
use super::{check_len, cuda_err, to_i64, CudaBackend, DevBuf};
use crate::backend::cpu::superpose::check_superpose_groups;
use crate::backend::radix::{
    radix_update, segments, BufOf, RadixKeys, RadixState, Threshold, MAX_HIST_BITS,
};
use crate::backend::{SelectAction, SuperposeGroup, SuperposeParams};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

// SAFETY: `SuperposeParams` is `#[repr(C)]`, `Copy`, made of three f32 and a u32 (16 bytes, no
// padding) and mirrored field for field by `struct SuperposeParams` in kernels/superpose.cu,
// so a pointer to one is what the kernels expect for that argument.
unsafe impl DeviceRepr for SuperposeParams {}

/// Device views of one target's read-only inputs; absent ones point at a placeholder and come
/// with a 0 flag, so the kernels never read them.
struct Inputs<'a> {
    w: CudaView<'a, f32>,
    mask: CudaView<'a, f32>,
    has_mask: i32,
    count: CudaView<'a, f32>,
    has_count: i32,
}

impl CudaBackend {
    /// `superpose_hist_f32` over `s.len()` elements into `hist` (2^bits bins, accumulated).
    #[allow(clippy::too_many_arguments)]
    fn launch_superpose_hist(
        &self,
        s: &CudaView<'_, f32>,
        x: &Inputs<'_>,
        p: &SuperposeParams,
        prefix: u32,
        prefix_mask: u32,
        shift: u32,
        bits: u32,
        hist: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let len = s.len();
        if !(1..=MAX_HIST_BITS).contains(&bits) || shift > 31 {
            return Err(Error::Cuda(format!(
                "superpose_hist_f32: bad digit (shift {shift}, bits {bits})"
            )));
        }
        check_len(hist.len(), 1 << bits, "superpose_hist_f32: hist")?;
        self.check_inputs(x, len, "superpose_hist_f32")?;
        if len == 0 {
            return Ok(());
        }
        let n = to_i64(len);
        let (shift, bits) = (shift as i32, bits as i32);
        let cfg = self.radix_hist_config(len);
        let f = self.loader.function("superpose_hist_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(s).arg(&x.w).arg(&x.mask).arg(&x.count);
        l.arg(&x.has_mask).arg(&x.has_count).arg(p);
        l.arg(&prefix)
            .arg(&prefix_mask)
            .arg(&shift)
            .arg(&bits)
            .arg(hist)
            .arg(&n);
        // SAFETY: arguments match `superpose_hist_f32(const float*, const float*, const float*,
        // const float*, int, int, SuperposeParams, unsigned, unsigned, int, int, unsigned*,
        // i64)`; s and w hold `len` elements, mask and count too when their flag is set (they
        // are not read otherwise), hist holds 2^bits ≤ 2048 bins.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch superpose_hist_f32"))?;
        Ok(())
    }

    /// `superpose_count_f32` with one block per element of `counts` (the segments).
    #[allow(clippy::too_many_arguments)]
    fn launch_superpose_count(
        &self,
        s: &CudaView<'_, f32>,
        x: &Inputs<'_>,
        p: &SuperposeParams,
        lo: u32,
        hi: u32,
        counts: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let len = s.len();
        let cfg = segment_config(counts.len(), "superpose_count_f32")?;
        self.check_inputs(x, len, "superpose_count_f32")?;
        let n = to_i64(len);
        let f = self.loader.function("superpose_count_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(s).arg(&x.w).arg(&x.mask).arg(&x.count);
        l.arg(&x.has_mask).arg(&x.has_count).arg(p);
        l.arg(&lo).arg(&hi).arg(counts).arg(&n);
        // SAFETY: arguments match `superpose_count_f32(const float*, const float*, const
        // float*, const float*, int, int, SuperposeParams, unsigned, unsigned, unsigned*,
        // i64)`; s and w hold `len` elements, mask and count too when flagged, and block b < g
        // writes counts[b] only.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch superpose_count_f32"))?;
        Ok(())
    }

    /// `superpose_apply_f32` with one block per element of `kept` (the segments); `count` is
    /// written only when `has_count` is set (the view may then be a placeholder).
    #[allow(clippy::too_many_arguments)]
    fn launch_superpose_apply(
        &self,
        s: &mut CudaViewMut<'_, f32>,
        w: &CudaView<'_, f32>,
        mask: &CudaView<'_, f32>,
        has_mask: bool,
        count: &mut CudaViewMut<'_, f32>,
        has_count: bool,
        p: &SuperposeParams,
        t: u32,
        tie_before: &CudaView<'_, u32>,
        tie_take: u32,
        kept: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let len = s.len();
        let g = kept.len();
        let cfg = segment_config(g, "superpose_apply_f32")?;
        check_len(w.len(), len, "superpose_apply_f32: w")?;
        if has_mask {
            check_len(mask.len(), len, "superpose_apply_f32: mask")?;
        }
        if has_count {
            check_len(count.len(), len, "superpose_apply_f32: count")?;
        }
        check_len(tie_before.len(), g, "superpose_apply_f32: tie_before")?;
        let n = to_i64(len);
        let (has_mask, has_count) = (has_mask as i32, has_count as i32);
        let f = self.loader.function("superpose_apply_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(s)
            .arg(w)
            .arg(mask)
            .arg(count)
            .arg(&has_mask)
            .arg(&has_count)
            .arg(p);
        l.arg(&t).arg(tie_before).arg(&tie_take).arg(kept).arg(&n);
        // SAFETY: arguments match `superpose_apply_f32(float*, const float*, const float*,
        // float*, int, int, SuperposeParams, unsigned, const unsigned*, unsigned, unsigned*,
        // i64)`; s and w hold `len` elements, mask and count too when flagged (never touched
        // otherwise); tie_before and kept hold g entries, one per block.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch superpose_apply_f32"))?;
        Ok(())
    }

    /// Errors unless every flagged input holds `len` elements.
    fn check_inputs(&self, x: &Inputs<'_>, len: usize, op: &str) -> Result<()> {
        check_len(x.w.len(), len, &format!("{op}: w"))?;
        if x.has_mask != 0 {
            check_len(x.mask.len(), len, &format!("{op}: mask"))?;
        }
        if x.has_count != 0 {
            check_len(x.count.len(), len, &format!("{op}: count"))?;
        }
        Ok(())
    }

    /// The read-only inputs of a target (placeholders for an absent mask or count).
    fn sp_inputs<'a>(
        &self,
        w: &'a Tensor,
        mask: Option<&'a Tensor>,
        count: Option<&'a Tensor>,
        placeholder: &'a DevBuf,
        op: &str,
    ) -> Result<Inputs<'a>> {
        let view = |t: Option<&'a Tensor>, what: &str| -> Result<(CudaView<'a, f32>, i32)> {
            Ok(match t {
                Some(t) => (self.buf(t, &format!("{op}: {what}"))?.view(), 1),
                None => (placeholder.view(), 0),
            })
        };
        let (mask, has_mask) = view(mask, "mask")?;
        let (count, has_count) = view(count, "count")?;
        Ok(Inputs {
            w: self.buf(w, &format!("{op}: ticket weight"))?.view(),
            mask,
            has_mask,
            count,
            has_count,
        })
    }

    /// Runs the CPU twin's `superpose_hist_f32` on device tensors: `hist` (host, 2^bits bins)
    /// is uploaded, accumulated into on the device and copied back.
    #[allow(clippy::too_many_arguments)]
    pub fn superpose_hist_f32(
        &self,
        s: &Tensor,
        w: &Tensor,
        mask: Option<&Tensor>,
        count: Option<&Tensor>,
        p: &SuperposeParams,
        prefix: u32,
        prefix_mask: u32,
        shift: u32,
        bits: u32,
        hist: &mut [u32],
    ) -> Result<()> {
        let op = "superpose_hist_f32";
        check_shapes(s, w, mask, count, op)?;
        let ph = self.alloc(1, &format!("{op}: placeholder"))?;
        let x = self.sp_inputs(w, mask, count, &ph, op)?;
        let sv = self.buf(s, &format!("{op}: S"))?.view();
        let mut h = self.upload_u32(hist, &format!("{op}: hist"))?;
        let nb = hist.len();
        self.launch_superpose_hist(
            &sv,
            &x,
            p,
            prefix,
            prefix_mask,
            shift,
            bits,
            &mut h.slice_mut(..nb),
        )?;
        hist.copy_from_slice(&self.download_u32(&h, nb, &format!("{op}: hist"))?);
        Ok(())
    }

    /// Runs the CPU twin's `superpose_count_f32` on device tensors (`counts.len()` segments).
    #[allow(clippy::too_many_arguments)]
    pub fn superpose_count_f32(
        &self,
        s: &Tensor,
        w: &Tensor,
        mask: Option<&Tensor>,
        count: Option<&Tensor>,
        p: &SuperposeParams,
        lo: u32,
        hi: u32,
        counts: &mut [u32],
    ) -> Result<()> {
        let op = "superpose_count_f32";
        check_shapes(s, w, mask, count, op)?;
        let ph = self.alloc(1, &format!("{op}: placeholder"))?;
        let x = self.sp_inputs(w, mask, count, &ph, op)?;
        let sv = self.buf(s, &format!("{op}: S"))?.view();
        let g = counts.len();
        let mut c = self.alloc_u32(g, &format!("{op}: counts"))?;
        self.launch_superpose_count(&sv, &x, p, lo, hi, &mut c.slice_mut(..g))?;
        counts.copy_from_slice(&self.download_u32(&c, g, &format!("{op}: counts"))?);
        Ok(())
    }

    /// Runs the CPU twin's `superpose_apply_f32` on device tensors (`kept.len()` segments).
    #[allow(clippy::too_many_arguments)]
    pub fn superpose_apply_f32(
        &self,
        s: &mut Tensor,
        w: &Tensor,
        mask: Option<&Tensor>,
        count: Option<&mut Tensor>,
        p: &SuperposeParams,
        t: u32,
        tie_before: &[u32],
        tie_take: u32,
        kept: &mut [u32],
    ) -> Result<()> {
        let op = "superpose_apply_f32";
        check_shapes(s, w, mask, count.as_deref(), op)?;
        let g = kept.len();
        if tie_before.len() != g {
            return Err(Error::Shape(format!(
                "{op}: {} tie offsets for {g} segments",
                tie_before.len()
            )));
        }
        let ph = self.alloc(1, &format!("{op}: placeholder"))?;
        let mut ph_count = self.alloc(1, &format!("{op}: placeholder"))?;
        let wv = self.buf(w, &format!("{op}: ticket weight"))?.view();
        let mv = match mask {
            Some(m) => self.buf(m, &format!("{op}: mask"))?.view(),
            None => ph.view(),
        };
        let tb = self.upload_u32(tie_before, &format!("{op}: tie_before"))?;
        let mut kb = self.alloc_u32(g, &format!("{op}: kept"))?;
        let has_count = count.is_some();
        let mut cv = match count {
            Some(c) => self.buf_mut(c, &format!("{op}: count"))?.view_mut(),
            None => ph_count.view_mut(),
        };
        let sb = self.buf_mut(s, &format!("{op}: S"))?;
        self.launch_superpose_apply(
            &mut sb.view_mut(),
            &wv,
            &mv,
            mask.is_some(),
            &mut cv,
            has_count,
            p,
            t,
            &tb.slice(..g),
            tie_take,
            &mut kb.slice_mut(..g),
        )?;
        kept.copy_from_slice(&self.download_u32(&kb, g, &format!("{op}: kept"))?);
        Ok(())
    }
}

/// Errors unless w, mask and count have the shape of s.
fn check_shapes(
    s: &Tensor,
    w: &Tensor,
    mask: Option<&Tensor>,
    count: Option<&Tensor>,
    op: &str,
) -> Result<()> {
    w.expect_shape(s.shape(), &format!("{op}: w (against S)"))?;
    if let Some(m) = mask {
        m.expect_shape(s.shape(), &format!("{op}: mask (against S)"))?;
    }
    if let Some(c) = count {
        c.expect_shape(s.shape(), &format!("{op}: count (against S)"))?;
    }
    Ok(())
}

/// The superpose family's keys over device tensors, for the radix driver: the kernels as its
/// passes.
struct SuperposeKernels<'b, 'g, 'a> {
    be: &'b CudaBackend,
    groups: &'g mut [SuperposeGroup<'a>],
    p: SuperposeParams,
    /// Stands in for an absent mask or count (never read or written).
    placeholder: DevBuf,
    placeholder_count: DevBuf,
}

impl SuperposeKernels<'_, '_, '_> {
    /// The read-only inputs and the S view of target (g, t).
    fn read_views(&self, g: usize, t: usize) -> Result<(CudaView<'_, f32>, Inputs<'_>)> {
        let target = &self.groups[g].targets[t];
        let op = self.op();
        let count = target.count.as_deref();
        let x = self
            .be
            .sp_inputs(target.w, target.mask, count, &self.placeholder, op)?;
        Ok((self.be.buf(target.s, op)?.view(), x))
    }
}

impl RadixKeys for SuperposeKernels<'_, '_, '_> {
    type Mem = CudaBackend;
    fn mem(&self) -> &CudaBackend {
        self.be
    }
    fn op(&self) -> &'static str {
        "superpose_update"
    }
    fn groups(&self) -> usize {
        self.groups.len()
    }
    fn k(&self, g: usize) -> usize {
        self.groups[g].k
    }
    fn lens(&self, g: usize) -> Vec<usize> {
        self.groups[g].targets.iter().map(|t| t.s.numel()).collect()
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
        let (sv, x) = self.read_views(g, t)?;
        let mut h = hist.slice_mut(at..at + (1 << bits));
        let (prefix, pmask) = (st.prefix, st.prefix_mask);
        self.be
            .launch_superpose_hist(&sv, &x, &self.p, prefix, pmask, shift, bits, &mut h)
    }
    fn count(
        &self,
        g: usize,
        t: usize,
        key: u32,
        counts: &mut BufOf<Self>,
        at: usize,
    ) -> Result<()> {
        let (sv, x) = self.read_views(g, t)?;
        let mut c = counts.slice_mut(at..at + segments(sv.len()));
        self.be
            .launch_superpose_count(&sv, &x, &self.p, key, key, &mut c)
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
        let target = &mut self.groups[g].targets[t];
        let n = segments(target.s.numel());
        let wv = be.buf(target.w, op)?.view();
        let mv = match target.mask {
            Some(m) => be.buf(m, op)?.view(),
            None => self.placeholder.view(),
        };
        let has_count = target.count.is_some();
        let mut cv = match target.count.as_deref_mut() {
            Some(c) => be.buf_mut(c, op)?.view_mut(),
            None => self.placeholder_count.view_mut(),
        };
        let sb = be.buf_mut(target.s, op)?;
        be.launch_superpose_apply(
            &mut sb.view_mut(),
            &wv,
            &mv,
            target.mask.is_some(),
            &mut cv,
            has_count,
            &self.p,
            thr.key,
            &tie_before.slice(at..at + n),
            thr.tie_take,
            &mut out.slice_mut(at..at + n),
        )
    }
}

/// The fused superposition of every group on the device (see the module doc).
pub(super) fn superpose_update(
    be: &CudaBackend,
    groups: &mut [SuperposeGroup<'_>],
    p: &SuperposeParams,
) -> Result<Vec<Vec<usize>>> {
    let op = "superpose_update";
    check_superpose_groups(groups, p)?;
    for (gi, g) in groups.iter().enumerate() {
        for (ti, t) in g.targets.iter().enumerate() {
            let what = |n: &str| format!("{op}: group {gi}, target {ti}: {n}");
            be.buf(t.s, &what("S"))?;
            be.buf(t.w, &what("ticket weight"))?;
            if let Some(m) = t.mask {
                be.buf(m, &what("mask"))?;
            }
            if let Some(c) = &t.count {
                be.buf(c, &what("count"))?;
            }
        }
    }
    let mut kernels = SuperposeKernels {
        be,
        groups,
        p: *p,
        placeholder: be.alloc(1, "superpose: placeholder")?,
        placeholder_count: be.alloc(1, "superpose: placeholder")?,
    };
    radix_update(&mut kernels, SelectAction::Keep)
}
