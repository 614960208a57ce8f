//! Parameters (with their optional mask and momentum buffer) and non-trainable buffers (batch
//! norm running statistics), named like the equivalent PyTorch module's state dict.

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
    pub mask: Option<Tensor>,
    /// Its role.
    pub role: ParamRole,
}

impl Param {
    /// True for conv and linear weights (the tensors sparse training masks).
    pub fn is_maskable(&self) -> bool {
        self.role == ParamRole::Weight
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
        self.params.push(Param {
            name: name.into(),
            value,
            momentum: None,
            mask: None,
            role,
        });
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
            if let Some(m) = &p.mask {
                p.mask = Some(m.to_device(device)?);
            }
        }
        for b in &mut self.buffers {
            b.value = b.value.to_device(device)?;
        }
        Ok(())
    }
}
