//! The rayon CPU backend. Each family file holds the CPU twins of the CUDA kernels of the same
//! stem (`pub fn <kernel_name>` on slices, the reference semantics) and the fast paths the
//! backend actually runs.

use crate::backend::{Backend, BnBackward, BnForward, Conv2dParams, Pool2dParams, SgdParams};
use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;

/// The CPU backend (stateless; use the [`CPU`] instance).
#[derive(Debug, Default)]
pub struct CpuBackend;

/// The CPU backend instance.
pub static CPU: CpuBackend = CpuBackend;

#[allow(unused_variables)]
impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(vec![0.0; crate::tensor::numel(shape)], shape)
    }
    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(t.as_cpu()?.to_vec())
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
