//! Neural-network building blocks: parameters, the forward context, layers and [`Network`].

mod basic;
mod batchnorm;
mod conv;
mod forward;
mod linear;
mod network;
mod param;

pub use basic::{Flatten, GlobalAvgPool, MaxPool, Relu, Sequential};
pub use batchnorm::{BatchNorm, BatchNormRelu};
pub use conv::Conv2d;
pub use forward::{Forward, Layer, LayerKind, LayerTrace};
pub use linear::Linear;
pub use network::{Network, StepOutput};
pub use param::{Buffer, BufferId, Param, ParamId, ParamRole, ParamStore};
