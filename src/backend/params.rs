//! Kernel parameter structs. They are `#[repr(C)]` and mirrored field for field by the structs
//! of the same name in `kernels/*.cu`, so one value is passed to either backend.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};

/// Geometry of a 2-d convolution over NCHW input with an [c_out, c_in, k_h, k_w] weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Conv2dParams {
    /// Batch size.
    pub n: u32,
    /// Input channels.
    pub c_in: u32,
    /// Input height.
    pub h_in: u32,
    /// Input width.
    pub w_in: u32,
    /// Output channels.
    pub c_out: u32,
    /// Kernel height.
    pub k_h: u32,
    /// Kernel width.
    pub k_w: u32,
    /// Stride (both directions).
    pub stride: u32,
    /// Zero padding (both directions, both sides).
    pub pad: u32,
    /// Output height.
    pub h_out: u32,
    /// Output width.
    pub w_out: u32,
}

impl Conv2dParams {
    /// Derives the output size; errors if the kernel does not fit the padded input.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        c_in: usize,
        h_in: usize,
        w_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        if stride == 0 || k == 0 || h_in + 2 * pad < k || w_in + 2 * pad < k {
            return Err(Error::Shape(format!(
                "conv2d: kernel {k}x{k} stride {stride} pad {pad} does not fit input {h_in}x{w_in}"
            )));
        }
        let h_out = (h_in + 2 * pad - k) / stride + 1;
        let w_out = (w_in + 2 * pad - k) / stride + 1;
        Ok(Conv2dParams {
            n: n as u32,
            c_in: c_in as u32,
            h_in: h_in as u32,
            w_in: w_in as u32,
            c_out: c_out as u32,
            k_h: k as u32,
            k_w: k as u32,
            stride: stride as u32,
            pad: pad as u32,
            h_out: h_out as u32,
            w_out: w_out as u32,
        })
    }
    /// Errors (naming `op`) unless the derived sizes are consistent, as [`Conv2dParams::new`]
    /// makes them: the kernels divide by the stride and index the input from the output size.
    pub fn check(&self, op: &str) -> Result<()> {
        let p = self;
        let fits = |size: u32, k: u32, out: u32| {
            p.stride > 0
                && k > 0
                && size + 2 * p.pad >= k
                && out == (size + 2 * p.pad - k) / p.stride + 1
        };
        if !fits(p.h_in, p.k_h, p.h_out) || !fits(p.w_in, p.k_w, p.w_out) {
            return Err(Error::Shape(format!(
                "{op}: inconsistent convolution parameters {p:?} (build them with Conv2dParams::new)"
            )));
        }
        Ok(())
    }
    /// Input shape [n, c_in, h_in, w_in].
    pub fn x_shape(&self) -> [usize; 4] {
        [
            self.n as usize,
            self.c_in as usize,
            self.h_in as usize,
            self.w_in as usize,
        ]
    }
    /// Weight shape [c_out, c_in, k_h, k_w].
    pub fn w_shape(&self) -> [usize; 4] {
        [
            self.c_out as usize,
            self.c_in as usize,
            self.k_h as usize,
            self.k_w as usize,
        ]
    }
    /// Output shape [n, c_out, h_out, w_out].
    pub fn y_shape(&self) -> [usize; 4] {
        [
            self.n as usize,
            self.c_out as usize,
            self.h_out as usize,
            self.w_out as usize,
        ]
    }
    /// Rows of the im2col matrix of one image: c_in * k_h * k_w.
    pub fn col_rows(&self) -> usize {
        (self.c_in * self.k_h * self.k_w) as usize
    }
    /// Columns of the im2col matrix of one image: h_out * w_out.
    pub fn col_cols(&self) -> usize {
        (self.h_out * self.w_out) as usize
    }
    /// Multiply-adds of the forward pass of the whole batch.
    pub fn macs(&self) -> u64 {
        self.n as u64 * self.c_out as u64 * self.col_rows() as u64 * self.col_cols() as u64
    }
}

/// Geometry of a 2-d pooling window over NCHW input (max or average), with optional zero padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Pool2dParams {
    /// Batch size.
    pub n: u32,
    /// Channels.
    pub c: u32,
    /// Input height.
    pub h_in: u32,
    /// Input width.
    pub w_in: u32,
    /// Window size (square).
    pub k: u32,
    /// Stride.
    pub stride: u32,
    /// Zero padding (max-pool pads with -inf, average pool counts padding as zeros).
    pub pad: u32,
    /// Output height.
    pub h_out: u32,
    /// Output width.
    pub w_out: u32,
}

impl Pool2dParams {
    /// Derives the output size; errors if the window does not fit.
    pub fn new(
        n: usize,
        c: usize,
        h_in: usize,
        w_in: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        if stride == 0 || k == 0 || h_in + 2 * pad < k || w_in + 2 * pad < k || pad * 2 > k {
            return Err(Error::Shape(format!(
                "pool2d: window {k} stride {stride} pad {pad} does not fit input {h_in}x{w_in}"
            )));
        }
        Ok(Pool2dParams {
            n: n as u32,
            c: c as u32,
            h_in: h_in as u32,
            w_in: w_in as u32,
            k: k as u32,
            stride: stride as u32,
            pad: pad as u32,
            h_out: ((h_in + 2 * pad - k) / stride + 1) as u32,
            w_out: ((w_in + 2 * pad - k) / stride + 1) as u32,
        })
    }
    /// Errors (naming `op`) unless the derived sizes are consistent, as [`Pool2dParams::new`]
    /// makes them.
    pub fn check(&self, op: &str) -> Result<()> {
        let p = self;
        let fits = |size: u32, out: u32| {
            p.stride > 0
                && p.k > 0
                && 2 * p.pad <= p.k
                && size + 2 * p.pad >= p.k
                && out == (size + 2 * p.pad - p.k) / p.stride + 1
        };
        if !fits(p.h_in, p.h_out) || !fits(p.w_in, p.w_out) {
            return Err(Error::Shape(format!(
                "{op}: inconsistent pooling parameters {p:?} (build them with Pool2dParams::new)"
            )));
        }
        Ok(())
    }
    /// Input shape.
    pub fn x_shape(&self) -> [usize; 4] {
        [
            self.n as usize,
            self.c as usize,
            self.h_in as usize,
            self.w_in as usize,
        ]
    }
    /// Output shape.
    pub fn y_shape(&self) -> [usize; 4] {
        [
            self.n as usize,
            self.c as usize,
            self.h_out as usize,
            self.w_out as usize,
        ]
    }
}

/// Hyper-parameters of one masked SGD step (momentum, optional Nesterov, L2 weight decay).
///
/// With g' = g + weight_decay * w:  m = momentum * m + g';  step = nesterov ? g' + momentum * m : m;
/// w = w - lr * step; then, if a mask is given, w *= mask and m *= mask (PyTorch's SGD with
/// dampening 0, followed by the reference code's mask application).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct SgdParams {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor.
    pub momentum: f32,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f32,
    /// 1 for Nesterov momentum, 0 otherwise.
    pub nesterov: u32,
}
