//! Copy-on-write of a device tensor that the device has no room for is an error naming the
//! copy, not a panic (`CudaStorage::try_clone`, `Tensor::storage_mut`). A test binary of its
//! own: it sizes the virtual GPU's memory before the device starts.

mod common;

use suptickets::{Device, Tensor};

#[test]
fn copy_on_write_without_room_on_the_device_is_an_error() {
    // The virtual GPU (tools/vgpu) reads its memory size when the driver starts: 256 MiB keeps
    // this test small there. A real driver ignores the variable, and the test fills the GPU.
    std::env::set_var("VGPU_MEM_MB", "256");
    if !common::have_gpu() {
        return;
    }
    let dev = Device::cuda(0).unwrap();
    let Device::Cuda(be) = &dev else {
        unreachable!("Device::cuda returns a CUDA device")
    };
    let (free, _) = be.mem_info().unwrap();
    // More than half of the free memory: the tensor fits once, not twice.
    let n = free / 4 * 6 / 10;
    let big = Tensor::zeros(&[n], &dev).unwrap();
    let mut shared = big.clone();
    let Err(e) = shared.storage_mut() else {
        panic!("a second copy of {n} floats fit in {free} free bytes")
    };
    assert!(e.to_string().contains("copying a tensor"), "{e}");
    drop((big, shared));
    // With room, the same copy-on-write succeeds: a separate buffer with the same elements.
    let a = Tensor::from_slice(&[1.0, 2.0, 3.0], &[3], &dev).unwrap();
    let mut b = a.clone();
    assert!(std::ptr::eq(a.storage(), b.storage()));
    b.storage_mut().unwrap();
    assert!(!std::ptr::eq(a.storage(), b.storage()));
    assert_eq!(b.to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
}
