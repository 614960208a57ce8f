//! The CUDA backend: kernels in `kernels/*.cu`, compiled at run time by NVRTC and cached per
//! module ([`loader`]), launched through cudarc on one stream per backend.
//!
//! The family files (`conv.rs`, `matmul.rs`, ...) hold, for each kernel of the registry, a
//! launch wrapper on device views that checks every length the kernel will index (so a launch
//! cannot read or write out of bounds), a public tensor-level entry point with the CPU twin's
//! name and argument order (used by the parity tests), and the compositions the [`Backend`]
//! methods run (e.g. a convolution is im2col + batched SGEMM + bias add).
//!
//! Nothing here panics on a machine without CUDA: [`CudaBackend::new`] probes the driver and
//! NVRTC libraries before cudarc touches them and returns [`Error::Device`] saying what is
//! missing.

mod batchnorm;
pub mod conv;
mod elementwise;
pub mod loader;
mod loss;
mod matmul;
mod optim;
mod pool;
mod radix;
mod select;
mod spconv;
mod spconv_csr;
mod superpose;

use std::collections::HashMap;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr, DriverError,
    LaunchConfig,
};

pub use loader::{compile_family, nvrtc_available, ptx_entries, ptxas_report, Compiled};
pub use matmul::Gemm;

use crate::backend::{
    Backend, BnBackward, BnForward, Conv2dParams, CsrPlan, Pool2dParams, SelectAction, SelectGroup,
    SgdParams, SparseMatrix, SparseOperand, SuperposeGroup, SuperposeParams,
};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{numel, Storage, Tensor};

// SAFETY: the three parameter structs are `#[repr(C)]`, `Copy`, made of 4-byte integers and
// floats with no padding, and mirrored field for field by the structs of the same name in
// kernels/common.cuh (Conv2dParams) and kernels/*.cu, so passing a pointer to one as a kernel
// argument is what the kernel expects.
unsafe impl DeviceRepr for Conv2dParams {}
// SAFETY: see above.
unsafe impl DeviceRepr for Pool2dParams {}
// SAFETY: see above.
unsafe impl DeviceRepr for SgdParams {}

/// Threads per block of the 1-d (grid-stride) kernels and of the per-channel reductions.
pub(crate) const BLOCK: u32 = 256;

/// A device allocation of `len` f32. A zero-length buffer still holds one element, because
/// `cuMemAlloc` rejects zero-byte requests on some drivers; its views are empty.
pub struct DevBuf {
    slice: CudaSlice<f32>,
    len: usize,
}

impl DevBuf {
    /// Number of (logical) elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole buffer, read-only.
    pub fn view(&self) -> CudaView<'_, f32> {
        self.slice.slice(..self.len)
    }

    /// The whole buffer, writable.
    pub fn view_mut(&mut self) -> CudaViewMut<'_, f32> {
        self.slice.slice_mut(..self.len)
    }

    /// Part of the buffer (panics if the range is outside `0..len`).
    pub fn slice(&self, range: impl RangeBounds<usize>) -> CudaView<'_, f32> {
        self.view().slice(range)
    }

    /// Part of the buffer, writable (panics if the range is outside `0..len`).
    pub fn slice_mut(&mut self, range: impl RangeBounds<usize>) -> CudaViewMut<'_, f32> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&a) => a,
            Bound::Excluded(&a) => a + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&b) => b + 1,
            Bound::Excluded(&b) => b,
            Bound::Unbounded => self.len,
        };
        assert!(
            start <= end && end <= self.len,
            "DevBuf::slice_mut: {start}..{end} is outside 0..{}",
            self.len
        );
        self.slice.slice_mut(start..end)
    }
}

/// A CUDA device buffer and the backend that owns it.
pub struct CudaStorage {
    /// The backend (context, stream, modules) the buffer belongs to.
    pub backend: Arc<CudaBackend>,
    pub(crate) buf: DevBuf,
}

impl CudaStorage {
    /// The device buffer (row-major f32, as many elements as the tensor).
    pub fn view(&self) -> CudaView<'_, f32> {
        self.buf.view()
    }

    /// A deep copy (device to device), as copy-on-write of a shared tensor needs; an error
    /// naming the size when the device cannot hold the copy.
    pub fn try_clone(&self) -> Result<CudaStorage> {
        let slice = self.buf.slice.try_clone().map_err(|e| {
            Error::Cuda(format!(
                "copying a tensor of {} elements on the device: {e}",
                self.buf.len
            ))
        })?;
        Ok(CudaStorage {
            backend: self.backend.clone(),
            buf: DevBuf {
                slice,
                len: self.buf.len,
            },
        })
    }
}

/// The CUDA backend for one GPU: a context, its stream, and the NVRTC module cache.
pub struct CudaBackend {
    ordinal: usize,
    me: Weak<CudaBackend>,
    // Field order matters on drop: modules and the stream before the context.
    loader: loader::Loader,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    sm_count: u32,
    gpu_name: String,
    compute_capability: (i32, i32),
}

/// Maps a cudarc driver error to [`Error::Cuda`], naming what was being done.
pub(crate) fn cuda_err(what: impl std::fmt::Display) -> impl FnOnce(DriverError) -> Error {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

/// `v` as an i32 kernel argument, or a shape error naming it.
pub(crate) fn to_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Shape(format!("{what} = {v} does not fit in an i32")))
}

/// `v` as an i64 kernel argument.
pub(crate) fn to_i64(v: usize) -> i64 {
    v as i64
}

/// Errors unless a device buffer holds at least `need` elements.
pub(crate) fn check_len(have: usize, need: usize, what: &str) -> Result<()> {
    if have < need {
        return Err(Error::Shape(format!(
            "{what}: buffer holds {have} elements, the kernel needs {need}"
        )));
    }
    Ok(())
}

impl CudaBackend {
    /// The stream every kernel of this backend runs on (NCCL collectives join it).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Opens GPU `ordinal`, or returns [`Error::Device`] saying what is missing when CUDA is
    /// not usable here (no driver library, no GPU, no NVRTC). Never panics. While a backend
    /// for `ordinal` is alive, this returns that same backend, so tensors created through
    /// separate `Device::cuda(0)` calls live on the same device and work together.
    pub fn new(ordinal: usize) -> Result<Arc<CudaBackend>> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Weak<CudaBackend>>>> = OnceLock::new();
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(b) = open.get(&ordinal).and_then(Weak::upgrade) {
            return Ok(b);
        }
        let b = Self::open(ordinal)?;
        open.insert(ordinal, Arc::downgrade(&b));
        Ok(b)
    }

    /// Opens a new backend (context, stream, empty module cache) on GPU `ordinal`.
    fn open(ordinal: usize) -> Result<Arc<CudaBackend>> {
        // SAFETY: only `dlopen`s cudarc's candidate names for libcuda and closes them again.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Device(format!(
                "cuda:{ordinal}: the CUDA driver library (libcuda.so.1) was not found: this \
                 machine has no NVIDIA driver installed (or it is not on the library path). \
                 Install the NVIDIA driver, or run with --device cpu"
            )));
        }
        if !nvrtc_available() {
            return Err(Error::Device(format!(
                "cuda:{ordinal}: the kernels are compiled at run time, but {}",
                loader::NVRTC_HINT
            )));
        }
        let count = CudaContext::device_count().map_err(|e| {
            Error::Device(format!(
                "cuda:{ordinal}: the CUDA driver found no usable GPU ({e}); check nvidia-smi, \
                 or run with --device cpu"
            ))
        })?;
        if count <= 0 || ordinal >= count as usize {
            return Err(Error::Device(format!(
                "cuda:{ordinal}: this machine has {count} CUDA GPU(s); pick cuda:0..cuda:{} or \
                 run with --device cpu",
                (count - 1).max(0)
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| Error::Device(format!("cuda:{ordinal}: creating a context: {e}")))?;
        // SAFETY: the backend uses a single stream for every launch and copy, so cudarc's
        // per-buffer events (which order work across streams) are not needed; skipping them
        // saves two event creations per allocation.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx
            .compute_capability()
            .map_err(cuda_err(format!("cuda:{ordinal}: compute capability")))?;
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(cuda_err(format!("cuda:{ordinal}: multiprocessor count")))?
            .max(1) as u32;
        let gpu_name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let loader = loader::Loader::new(ctx.clone(), major, minor);
        Ok(Arc::new_cyclic(|me| CudaBackend {
            ordinal,
            me: me.clone(),
            loader,
            stream,
            ctx,
            sm_count,
            gpu_name,
            compute_capability: (major, minor),
        }))
    }

    /// The GPU's name, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn gpu_name(&self) -> &str {
        &self.gpu_name
    }

    /// The GPU's compute capability (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    /// (free, total) device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        self.ctx
            .mem_get_info()
            .map_err(cuda_err(format!("cuda:{} memory info", self.ordinal)))
    }

    /// Waits for every queued kernel and copy (for timing; downloads already wait).
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(cuda_err(format!("cuda:{} synchronize", self.ordinal)))
    }

    /// Compiles every kernel family now instead of on first use (and reports NVRTC errors).
    pub fn warm_up(&self) -> Result<()> {
        for k in crate::backend::registry::KERNELS {
            self.loader.function(k.name)?;
        }
        Ok(())
    }

    /// This backend as an `Arc` (it is only ever created inside one).
    pub(crate) fn arc(&self) -> Arc<CudaBackend> {
        self.me
            .upgrade()
            .expect("a CudaBackend is only reachable through its Arc")
    }

    /// A 1-d grid-stride launch over `total` items.
    pub(crate) fn cfg_1d(&self, total: usize) -> LaunchConfig {
        let blocks = total.div_ceil(BLOCK as usize).max(1);
        let cap = self.sm_count as usize * 32;
        LaunchConfig {
            grid_dim: (blocks.min(cap) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// One block per item (grid-stride over items beyond the cap), `BLOCK` threads each.
    pub(crate) fn cfg_per_block(&self, items: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (items.clamp(1, 65_535) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// An uninitialised device buffer of `len` f32 (the caller's kernel overwrites all of it).
    pub(crate) fn alloc(&self, len: usize, what: &str) -> Result<DevBuf> {
        // SAFETY: the memory is uninitialised; every caller launches a kernel that writes all
        // `len` elements before anything reads them (or reads none of them when it fails).
        let slice = unsafe { self.stream.alloc::<f32>(len.max(1)) }
            .map_err(cuda_err(format!("{what}: allocate {len} f32")))?;
        Ok(DevBuf { slice, len })
    }

    /// A zeroed device buffer of `len` f32.
    pub(crate) fn alloc_zeros(&self, len: usize, what: &str) -> Result<DevBuf> {
        let slice = self
            .stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(cuda_err(format!("{what}: allocate {len} zeroed f32")))?;
        Ok(DevBuf { slice, len })
    }

    /// Copies host data to a new device buffer (an empty one when `data` is empty).
    pub(crate) fn upload_buf(&self, data: &[f32], what: &str) -> Result<DevBuf> {
        if data.is_empty() {
            return self.alloc(0, what);
        }
        let slice = self.stream.clone_htod(data).map_err(cuda_err(what))?;
        Ok(DevBuf {
            slice,
            len: data.len(),
        })
    }

    /// Wraps a device buffer of `numel(shape)` elements as a tensor of this backend.
    pub(crate) fn wrap(&self, buf: DevBuf, shape: &[usize]) -> Tensor {
        debug_assert_eq!(buf.len(), numel(shape));
        Tensor::from_storage(
            Storage::Cuda(CudaStorage {
                backend: self.arc(),
                buf,
            }),
            shape,
        )
    }

    fn wrong_device(&self, t: &Tensor, what: &str) -> Error {
        Error::Device(format!(
            "{what}: expected a tensor on {}, got one on {} (move it with to_device)",
            self.name(),
            t.device().name()
        ))
    }

    /// The device buffer of `t`, or [`Error::Device`] if it lives elsewhere.
    pub(crate) fn buf<'a>(&self, t: &'a Tensor, what: &str) -> Result<&'a DevBuf> {
        match t.storage() {
            Storage::Cuda(s) if std::ptr::eq(Arc::as_ptr(&s.backend), self) => Ok(&s.buf),
            _ => Err(self.wrong_device(t, what)),
        }
    }

    /// The device buffer of `t` for writing (copied first if another tensor shares it).
    pub(crate) fn buf_mut<'a>(&self, t: &'a mut Tensor, what: &str) -> Result<&'a mut DevBuf> {
        self.buf(t, what)?;
        match t
            .storage_mut()
            .map_err(|e| Error::Cuda(format!("{what}: {e}")))?
        {
            Storage::Cuda(s) => Ok(&mut s.buf),
            Storage::Cpu(_) => unreachable!("checked above"),
        }
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }
    fn device(&self) -> Device {
        Device::Cuda(self.arc())
    }
    fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        let buf = self.alloc_zeros(numel(shape), "zeros")?;
        Ok(self.wrap(buf, shape))
    }
    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::Shape(format!(
                "upload: {} elements given for shape {shape:?} ({} expected)",
                data.len(),
                numel(shape)
            )));
        }
        let buf = self.upload_buf(data, &format!("upload {shape:?} to {}", self.name()))?;
        Ok(self.wrap(buf, shape))
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        let buf = self.buf(t, "download")?;
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        self.stream
            .clone_dtoh(&buf.view())
            .map_err(cuda_err(format!(
                "download {:?} from {}",
                t.shape(),
                self.name()
            )))
    }
    fn conv2d_fwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        conv::conv2d_fwd(self, x, w, bias, p)
    }
    fn conv2d_bwd_input(&self, dy: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<Tensor> {
        conv::conv2d_bwd_input(self, dy, w, p)
    }
    fn conv2d_bwd_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        p: &Conv2dParams,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        conv::conv2d_bwd_weight(self, x, dy, p, mask)
    }
    fn channel_sum(&self, x: &Tensor) -> Result<Tensor> {
        conv::channel_sum(self, x)
    }
    fn spconv_fwd(
        &self,
        x: &Tensor,
        w: SparseOperand<'_>,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        spconv::spconv_fwd(self, x, w, bias, p)
    }
    fn spconv_bwd_input(&self, dy: &Tensor, w: SparseOperand, p: &Conv2dParams) -> Result<Tensor> {
        spconv::spconv_bwd_input(self, dy, w, p)
    }
    fn spconv_bwd_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        w: SparseOperand<'_>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        spconv::spconv_bwd_weight(self, x, dy, w, p)
    }
    fn csr_plan(&self, mask: &Tensor, rows: usize, cols: usize, nnz: usize) -> Result<CsrPlan> {
        self.dev_csr_plan(mask, (rows, cols), nnz)
    }
    fn csr_gather(&self, plan: &CsrPlan, w: &Tensor, transposed: bool) -> Result<SparseMatrix> {
        self.dev_csr_gather(plan, w, transposed)
    }
    fn linear_fwd(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        matmul::linear_fwd(self, x, w, bias)
    }
    fn linear_bwd_input(&self, dy: &Tensor, w: &Tensor) -> Result<Tensor> {
        matmul::linear_bwd_input(self, dy, w)
    }
    fn linear_bwd_weight(&self, x: &Tensor, dy: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        matmul::linear_bwd_weight(self, x, dy, mask)
    }
    fn batchnorm_fwd_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<BnForward> {
        batchnorm::fwd_train(self, x, gamma, beta, eps)
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
        batchnorm::fwd_eval(self, x, gamma, beta, mean, var, eps)
    }
    fn batchnorm_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        invstd: &Tensor,
    ) -> Result<BnBackward> {
        batchnorm::bwd(self, dy, x, gamma, mean, invstd)
    }
    fn relu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        elementwise::relu_fwd(self, x)
    }
    fn relu_bwd(&self, dy: &Tensor, y: &Tensor) -> Result<Tensor> {
        elementwise::relu_bwd(self, dy, y)
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        elementwise::binary(self, "add_f32", a, b)
    }
    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        elementwise::binary(self, "mul_f32", a, b)
    }
    fn axpby(&self, a: f32, x: &Tensor, b: f32, y: &mut Tensor) -> Result<()> {
        self.axpby_f32(a, x, b, y)
    }
    fn copy_into(&self, x: &Tensor, dst: &mut Tensor, at: usize) -> Result<()> {
        self.copy_into_f32(x, dst, at)
    }
    fn maxpool2d_fwd(&self, x: &Tensor, p: &Pool2dParams) -> Result<(Tensor, Tensor)> {
        pool::maxpool_fwd(self, x, p)
    }
    fn maxpool2d_bwd(&self, dy: &Tensor, idx: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        pool::maxpool_bwd(self, dy, idx, p)
    }
    fn avgpool2d_fwd(&self, x: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        pool::avgpool_fwd(self, x, p)
    }
    fn avgpool2d_bwd(&self, dy: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        pool::avgpool_bwd(self, dy, p)
    }
    fn cross_entropy_fwd(&self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
        loss::cross_entropy_fwd(self, logits, labels)
    }
    fn cross_entropy_bwd(&self, logprobs: &Tensor, labels: &Tensor, scale: f32) -> Result<Tensor> {
        loss::cross_entropy_bwd(self, logprobs, labels, scale)
    }
    fn count_correct(&self, logprobs: &Tensor, labels: &Tensor, count: &mut Tensor) -> Result<()> {
        loss::count_correct(self, logprobs, labels, count)
    }
    fn sgd_step(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        mask: Option<&Tensor>,
        p: &SgdParams,
    ) -> Result<()> {
        optim::sgd_step(self, w, g, m, mask, p)
    }
    fn count_nonzero(&self, xs: &[&Tensor]) -> Result<Vec<usize>> {
        select::count_nonzero(self, xs)
    }
    fn select_update(
        &self,
        groups: &mut [SelectGroup<'_>],
        action: SelectAction,
    ) -> Result<Vec<Vec<usize>>> {
        select::select_update(self, groups, action)
    }
    fn superpose_update(
        &self,
        groups: &mut [SuperposeGroup<'_>],
        p: &SuperposeParams,
    ) -> Result<Vec<Vec<usize>>> {
        superpose::superpose_update(self, groups, p)
    }
}
