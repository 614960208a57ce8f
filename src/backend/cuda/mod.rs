//! The CUDA backend: kernels in `kernels/*.cu`, compiled at run time by NVRTC and cached per
//! module, launched through cudarc. (Skeleton: filled in by the CUDA work.)

use std::sync::Arc;

use crate::error::{Error, Result};

/// A CUDA device buffer and the backend that owns it.
#[derive(Clone)]
pub struct CudaStorage {
    /// The backend (context, stream, modules) the buffer belongs to.
    pub backend: Arc<CudaBackend>,
}

/// The CUDA backend for one GPU.
pub struct CudaBackend {
    ordinal: usize,
}

impl CudaBackend {
    /// Opens GPU `ordinal`, or returns a clear error when CUDA is not usable on this machine.
    pub fn new(ordinal: usize) -> Result<Arc<CudaBackend>> {
        let _ = ordinal;
        Err(Error::Device("CUDA backend not implemented yet".into()))
    }
}

use crate::backend::{Backend, BnBackward, BnForward, Conv2dParams, Pool2dParams, SgdParams};
use crate::device::Device;
use crate::tensor::Tensor;

#[allow(unused_variables)]
impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }
    fn device(&self) -> Device {
        unreachable!()
    }
    fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        todo!()
    }
    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        todo!()
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        todo!()
    }
    fn conv2d_fwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        todo!()
    }
    fn conv2d_bwd_input(&self, dy: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<Tensor> {
        todo!()
    }
    fn conv2d_bwd_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        p: &Conv2dParams,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        todo!()
    }
    fn channel_sum(&self, x: &Tensor) -> Result<Tensor> {
        todo!()
    }
    fn linear_fwd(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        todo!()
    }
    fn linear_bwd_input(&self, dy: &Tensor, w: &Tensor) -> Result<Tensor> {
        todo!()
    }
    fn linear_bwd_weight(&self, x: &Tensor, dy: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        todo!()
    }
    fn batchnorm_fwd_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<BnForward> {
        todo!()
    }
    fn batchnorm_fwd_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &Tensor,
        var: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        todo!()
    }
    fn batchnorm_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        invstd: &Tensor,
    ) -> Result<BnBackward> {
        todo!()
    }
    fn relu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        todo!()
    }
    fn relu_bwd(&self, dy: &Tensor, y: &Tensor) -> Result<Tensor> {
        todo!()
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        todo!()
    }
    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        todo!()
    }
    fn axpby(&self, a: f32, x: &Tensor, b: f32, y: &mut Tensor) -> Result<()> {
        todo!()
    }
    fn maxpool2d_fwd(&self, x: &Tensor, p: &Pool2dParams) -> Result<(Tensor, Tensor)> {
        todo!()
    }
    fn maxpool2d_bwd(&self, dy: &Tensor, idx: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        todo!()
    }
    fn avgpool2d_fwd(&self, x: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        todo!()
    }
    fn avgpool2d_bwd(&self, dy: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        todo!()
    }
    fn cross_entropy_fwd(&self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
        todo!()
    }
    fn cross_entropy_bwd(&self, logprobs: &Tensor, labels: &Tensor, scale: f32) -> Result<Tensor> {
        todo!()
    }
    fn sgd_step(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        mask: Option<&Tensor>,
        p: &SgdParams,
    ) -> Result<()> {
        todo!()
    }
}
