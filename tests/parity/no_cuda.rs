//! The error a machine without CUDA gets.

use super::*;

#[test]
fn cuda_unavailable_is_a_clear_error() {
    match Device::cuda(0) {
        Ok(d) => {
            // A GPU machine: the device opens and names itself.
            assert_eq!(d.name(), "cuda:0");
            println!("CUDA is available here; the no-GPU error path is not exercised");
        }
        Err(e) => {
            assert!(
                !common::gpu_required(),
                "SUPTICKETS_REQUIRE_GPU=1 but Device::cuda(0) failed: {e}"
            );
            let msg = e.to_string();
            assert!(
                matches!(e, Error::Device(_)),
                "expected Error::Device, got {e:?}"
            );
            assert!(
                msg.contains("cuda:0"),
                "the error should name the device: {msg}"
            );
            assert!(
                msg.contains("driver") || msg.contains("NVRTC") || msg.contains("GPU"),
                "the error should say what is missing: {msg}"
            );
            assert!(
                msg.contains("install")
                    || msg.contains("--device cpu")
                    || msg.contains("LD_LIBRARY_PATH"),
                "the error should say what to do: {msg}"
            );
            match Device::parse("cuda") {
                Err(Error::Device(m)) => assert_eq!(m, msg.trim_start_matches("device error: ")),
                other => panic!("Device::parse(\"cuda\") should fail the same way, got {other:?}"),
            }
            assert!(Device::parse("cuda:1").is_err());
            println!("skipped: no GPU (checked the error: {msg})");
        }
    }
}
