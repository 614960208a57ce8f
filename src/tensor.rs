//! [`Tensor`]: an f32 array with a shape, whose storage lives in CPU memory or in a CUDA
//! buffer. Cloning a tensor is cheap (the storage is reference counted); mutation goes through
//! copy-on-write, so a tensor held by the autograd tape is never changed behind its back.

use std::sync::Arc;

use crate::backend::Backend;
use crate::device::Device;
use crate::error::{Error, Result};

/// Where a tensor's elements live. Not `Clone`: copying a device buffer can fail, so copies go
/// through [`Storage::try_clone`].
pub enum Storage {
    /// Host memory, row-major, contiguous.
    Cpu(Vec<f32>),
    /// A CUDA device buffer, row-major, contiguous.
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::CudaStorage),
}

impl Drop for Storage {
    /// A CPU buffer goes back to the pool for the next kernel output of its length.
    // Without the `cuda` feature the CPU variant is the only one.
    #[allow(irrefutable_let_patterns)]
    fn drop(&mut self) {
        if let Storage::Cpu(v) = self {
            crate::backend::cpu::buffers::recycle(std::mem::take(v));
        }
    }
}

impl Storage {
    /// A deep copy on the same device; an error when the device cannot hold it.
    pub fn try_clone(&self) -> Result<Storage> {
        Ok(match self {
            Storage::Cpu(v) => Storage::Cpu(v.clone()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Storage::Cuda(s.try_clone()?),
        })
    }
}

/// A dense, contiguous, row-major f32 tensor.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?} on {})", self.shape, self.device().name())
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Wraps a storage; the caller guarantees it holds `numel(shape)` elements.
    pub fn from_storage(storage: Storage, shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            storage: Arc::new(storage),
        }
    }

    /// A CPU tensor from a vector; errors if the length does not match the shape.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::Shape(format!(
                "from_vec: {} elements given for shape {:?} ({} expected)",
                data.len(),
                shape,
                numel(shape)
            )));
        }
        Ok(Tensor::from_storage(Storage::Cpu(data), shape))
    }

    /// A tensor of zeros on `device`.
    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        device.backend().zeros(shape)
    }

    /// A tensor filled with `value` on `device`.
    pub fn full(shape: &[usize], value: f32, device: &Device) -> Result<Tensor> {
        device.backend().upload(&vec![value; numel(shape)], shape)
    }

    /// Copies host data to `device`.
    pub fn from_slice(data: &[f32], shape: &[usize], device: &Device) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::Shape(format!(
                "from_slice: {} elements given for shape {:?}",
                data.len(),
                shape
            )));
        }
        device.backend().upload(data, shape)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Mutable access to the storage (copies it first if the tape or another tensor shares
    /// it); an error when that copy cannot be allocated.
    pub fn storage_mut(&mut self) -> Result<&mut Storage> {
        if Arc::get_mut(&mut self.storage).is_none() {
            self.storage = Arc::new(self.storage.try_clone()?);
        }
        Ok(Arc::get_mut(&mut self.storage).expect("the storage was just made unique"))
    }

    /// The device the storage lives on.
    pub fn device(&self) -> Device {
        match &*self.storage {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Device::Cuda(s.backend.clone()),
        }
    }

    /// The backend that runs kernels on this tensor's storage.
    pub fn backend(&self) -> &dyn Backend {
        match &*self.storage {
            Storage::Cpu(_) => &crate::backend::cpu::CPU,
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => &*s.backend,
        }
    }

    /// The elements, if the tensor is on the CPU.
    pub fn as_cpu(&self) -> Result<&[f32]> {
        match &*self.storage {
            Storage::Cpu(v) => Ok(v),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => Err(Error::Device(
                "expected a CPU tensor, got a CUDA tensor".into(),
            )),
        }
    }

    /// Mutable elements, if the tensor is on the CPU (copy-on-write).
    pub fn as_cpu_mut(&mut self) -> Result<&mut [f32]> {
        match self.storage_mut()? {
            Storage::Cpu(v) => Ok(v),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => Err(Error::Device(
                "expected a CPU tensor, got a CUDA tensor".into(),
            )),
        }
    }

    /// Copies the elements to a host vector (from any device).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.backend().download(self)
    }

    /// The single element of a one-element tensor.
    pub fn scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::Shape(format!(
                "scalar() on a tensor of shape {:?}",
                self.shape
            )));
        }
        Ok(self.to_vec()?[0])
    }

    /// A copy on `device` (a cheap clone if it is already there).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device().same_as(device) {
            return Ok(self.clone());
        }
        let host = self.to_vec()?;
        device.backend().upload(&host, &self.shape)
    }

    /// The same storage viewed with another shape of the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::Shape(format!(
                "cannot reshape {:?} to {:?}",
                self.shape, shape
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: self.storage.clone(),
        })
    }

    /// (n, c, h, w) of a 4-d tensor; `what` names the tensor in the error.
    pub fn dims4(&self, what: &str) -> Result<(usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, c, h, w] => Ok((n, c, h, w)),
            _ => Err(Error::Shape(format!(
                "{what}: expected a 4-d tensor, got {:?}",
                self.shape
            ))),
        }
    }

    /// (rows, cols) of a 2-d tensor; `what` names the tensor in the error.
    pub fn dims2(&self, what: &str) -> Result<(usize, usize)> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(Error::Shape(format!(
                "{what}: expected a 2-d tensor, got {:?}",
                self.shape
            ))),
        }
    }

    /// Errors unless the shape equals `shape`.
    pub fn expect_shape(&self, shape: &[usize], what: &str) -> Result<()> {
        if self.shape != shape {
            return Err(Error::Shape(format!(
                "{what}: expected shape {:?}, got {:?}",
                shape, self.shape
            )));
        }
        Ok(())
    }
}
