//! Parameters (with their optional mask and momentum buffer) and non-trainable buffers (batch
//! norm running statistics), named like the equivalent PyTorch module's state dict.
//!
//! A parameter's mask is private: it is read with [`Param::mask`] and written only through
//! [`Param::set_mask`] / [`Param::mask_mut`] / [`Param::parts_mut`], which all drop the CSR
//! structure kept for the sparse kernels ([`Param::mask_csr`]) and bump [`Param::mask_version`],
//! so no mask write (method update, Sup-tickets, checkpoint load, device move) can leave a stale
//! structure behind.

use std::sync::Arc;

use crate::backend::CsrPlan;
use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;

/// What a parameter is for (decides whether it can be masked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    /// A conv or linear weight: maskable.
    Weight,
    /// A conv or linear bias.
    Bias,
    /// Batch-norm scale.
    BnWeight,
    /// Batch-norm shift.
    BnBias,
}

/// A trainable tensor.
#[derive(Clone, Debug)]
pub struct Param {
    /// PyTorch-style name, e.g. `layer1.0.conv1.weight`.
    pub name: String,
    /// The current value.
    pub value: Tensor,
    /// SGD momentum buffer (created by the first optimizer step).
    pub momentum: Option<Tensor>,
    /// 0/1 mask of the same shape (sparse training); the value is zero wherever it is zero.
    mask: Option<Tensor>,
    /// Its role.
    pub role: ParamRole,
    /// What is known of the current mask: its version, active count and CSR structure.
    csr: MaskCsr,
}

/// The mask's version (bumped by every mask write) and, until the next write, its active
/// count and CSR structure.
#[derive(Clone, Debug, Default)]
struct MaskCsr {
    version: u64,
    nnz: Option<usize>,
    plan: Option<Arc<CsrPlan>>,
}

impl Param {
    /// A parameter without mask or momentum.
    pub fn new(name: impl Into<String>, value: Tensor, role: ParamRole) -> Param {
        Param {
            name: name.into(),
            value,
            momentum: None,
            mask: None,
            role,
            csr: MaskCsr::default(),
        }
    }

    /// True for conv and linear weights (the tensors sparse training masks).
    pub fn is_maskable(&self) -> bool {
        self.role == ParamRole::Weight
    }

    /// The mask, if any.
    pub fn mask(&self) -> Option<&Tensor> {
        self.mask.as_ref()
    }

    /// Replaces the mask (None: unmasked).
    pub fn set_mask(&mut self, mask: Option<Tensor>) {
        self.mask_changed();
        self.mask = mask;
    }

    /// The mask for writing in place; the mask counts as changed.
    pub fn mask_mut(&mut self) -> Option<&mut Tensor> {
        self.mask_changed();
        self.mask.as_mut()
    }

    /// (value, mask, momentum) borrowed together for an in-place update (prune / grow); the
    /// mask counts as changed.
    pub fn parts_mut(&mut self) -> (&mut Tensor, Option<&mut Tensor>, Option<&mut Tensor>) {
        self.mask_changed();
        (&mut self.value, self.mask.as_mut(), self.momentum.as_mut())
    }

    /// The value for writing and the mask for reading (the masked optimizer step); the mask
    /// does not count as changed.
    pub fn value_mut_and_mask(&mut self) -> (&mut Tensor, Option<&Tensor>) {
        (&mut self.value, self.mask.as_ref())
    }

    /// How many times the mask has been written (for caches keyed on it).
    pub fn mask_version(&self) -> u64 {
        self.csr.version
    }

    /// Drops what was derived from the mask.
    fn mask_changed(&mut self) {
        self.csr = MaskCsr {
            version: self.csr.version + 1,
            nnz: None,
            plan: None,
        };
    }

    /// Active (nonzero, NaN included) entries of the mask (None without one), counted where it
    /// lives once per mask version.
    pub fn mask_nnz(&mut self) -> Result<Option<usize>> {
        let Some(mask) = &self.mask else {
            return Ok(None);
        };
        if self.csr.nnz.is_none() {
            self.csr.nnz = Some(mask.backend().count_nonzero(&[mask])?[0]);
        }
        Ok(self.csr.nnz)
    }

    /// The CSR structure of the mask viewed as [rows, numel / rows], when its density is at
    /// most `max_density` (else None, as without a mask). Built on the mask's device on first
    /// use and kept until the mask changes.
    pub fn mask_csr(&mut self, rows: usize, max_density: f64) -> Result<Option<Arc<CsrPlan>>> {
        let Some(nnz) = self.mask_nnz()? else {
            return Ok(None);
        };
        let mask = self.mask.as_ref().expect("counted above");
        let cols = mask.numel() / rows.max(1);
        if nnz as f64 > max_density * (rows * cols) as f64 {
            return Ok(None);
        }
        if let Some(p) = self.csr.plan.as_ref().filter(|p| p.rows == rows) {
            return Ok(Some(p.clone()));
        }
        let plan = Arc::new(mask.backend().csr_plan(mask, rows, cols, nnz)?);
        self.csr.plan = Some(plan.clone());
        Ok(Some(plan))
    }
}

/// A non-trainable tensor saved with the model (batch-norm running statistics).
#[derive(Clone, Debug)]
pub struct Buffer {
    /// PyTorch-style name, e.g. `bn1.running_mean`.
    pub name: String,
    /// The value.
    pub value: Tensor,
}

/// Index of a parameter in its [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub usize);

/// Index of a buffer in its [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferId(pub usize);

/// Every parameter and buffer of a network, in creation order.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    /// Trainable tensors.
    pub params: Vec<Param>,
    /// Running statistics.
    pub buffers: Vec<Buffer>,
}

impl ParamStore {
    /// Adds a parameter.
    pub fn add_param(
        &mut self,
        name: impl Into<String>,
        value: Tensor,
        role: ParamRole,
    ) -> ParamId {
        self.params.push(Param::new(name, value, role));
        ParamId(self.params.len() - 1)
    }
    /// Adds a buffer.
    pub fn add_buffer(&mut self, name: impl Into<String>, value: Tensor) -> BufferId {
        self.buffers.push(Buffer {
            name: name.into(),
            value,
        });
        BufferId(self.buffers.len() - 1)
    }
    /// The parameter `id`.
    pub fn param(&self, id: ParamId) -> &Param {
        &self.params[id.0]
    }
    /// The buffer `id`.
    pub fn buffer(&self, id: BufferId) -> &Buffer {
        &self.buffers[id.0]
    }
    /// Mutable buffer `id`.
    pub fn buffer_mut(&mut self, id: BufferId) -> &mut Buffer {
        &mut self.buffers[id.0]
    }
    /// Total number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(|p| p.value.numel()).sum()
    }
    /// Number of scalars in maskable tensors (conv and linear weights).
    pub fn num_maskable(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.is_maskable())
            .map(|p| p.value.numel())
            .sum()
    }
    /// Ids of the maskable parameters, in order.
    pub fn maskable_ids(&self) -> Vec<ParamId> {
        self.params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_maskable())
            .map(|(i, _)| ParamId(i))
            .collect()
    }
    /// Looks a parameter up by name.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.name == name).map(ParamId)
    }
    /// Moves every tensor (values, momenta, masks, buffers) to `device`.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        for p in &mut self.params {
            p.value = p.value.to_device(device)?;
            if let Some(m) = &p.momentum {
                p.momentum = Some(m.to_device(device)?);
            }
            if let Some(m) = p.mask() {
                let m = m.to_device(device)?;
                p.set_mask(Some(m));
            }
        }
        for b in &mut self.buffers {
            b.value = b.value.to_device(device)?;
        }
        Ok(())
    }
}
