//! The sparse kernels inside whole networks: a ResNet-18 (stride-2 convs, 1×1 shortcuts, a
//! linear head) and a VGG-16 (maps down to 2×2) with 90% ERK masks give the same loss, logits
//! and gradients whether the masked layers run the dense or the sparse kernels: masked weight
//! gradients on a regular step, dense ones when asked (RigL's update steps). One test function,
//! because the kernel choice is process-wide.

use suptickets::backend::sparse_policy::{set_sparse_kernels, SparseKernels};
use suptickets::models::{build, ModelConfig};
use suptickets::rng::Rng;
use suptickets::sparse::density::DensityInit;
use suptickets::sparse::mask::{init_random_masks, MaskInit};
use suptickets::Tensor;

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1e-6);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        // + 1e-5: gradients that are mathematically ~0 (a conv bias before batch norm) are noise.
        assert!(
            (x - y).abs() <= 2e-3 * scale + 1e-5,
            "{what}[{i}]: dense {x} vs sparse {y} (scale {scale})"
        );
    }
}

#[test]
fn sparse_kernels_match_dense_kernels_in_whole_networks() {
    for (model, width, batch) in [("resnet18", 0.25f32, 6usize), ("vgg16", 0.125, 4)] {
        let mut mc = ModelConfig::new(model, 10);
        mc.width = width;
        let mut net = build(&mc).unwrap();
        init_random_masks(
            &mut net.store,
            &MaskInit {
                sparsity: 0.9,
                init: DensityInit::Erk,
                dense_first_layer: false,
                seed: 3,
            },
        )
        .unwrap();
        let mut r = Rng::new(5);
        let x = Tensor::from_vec(
            (0..batch * 3 * 32 * 32).map(|_| r.normal()).collect(),
            &[batch, 3, 32, 32],
        )
        .unwrap();
        let y = Tensor::from_vec((0..batch).map(|i| (i % 10) as f32).collect(), &[batch]).unwrap();
        // Eval mode first (training passes move the running statistics).
        set_sparse_kernels(SparseKernels::Dense);
        let la = net.logits(&x).unwrap().to_vec().unwrap();
        set_sparse_kernels(SparseKernels::Sparse);
        let lb = net.logits(&x).unwrap().to_vec().unwrap();
        close(&la, &lb, &format!("{model} logits"));
        for dense_grads in [false, true] {
            set_sparse_kernels(SparseKernels::Dense);
            let a = net.forward_backward_with(&x, &y, dense_grads).unwrap();
            set_sparse_kernels(SparseKernels::Sparse);
            let b = net.forward_backward_with(&x, &y, dense_grads).unwrap();
            set_sparse_kernels(SparseKernels::Auto);
            let (la, lb) = (a.loss_value().unwrap(), b.loss_value().unwrap());
            assert!(
                (la - lb).abs() <= 1e-4 * la.abs().max(1.0),
                "{model}: loss {la} vs {lb}"
            );
            for (i, (ga, gb)) in a.grads.iter().zip(&b.grads).enumerate() {
                let name = &net.store.params[i].name;
                match (ga, gb) {
                    (Some(ga), Some(gb)) => {
                        let (va, vb) = (ga.to_vec().unwrap(), gb.to_vec().unwrap());
                        let mut va = va;
                        // On a regular step the dense path may leave inactive gradients
                        // nonzero before masking; compare on the mask.
                        if let (Some(m), false) = (net.store.params[i].mask(), dense_grads) {
                            let m = m.to_vec().unwrap();
                            va.iter_mut().zip(&m).for_each(|(g, &m)| *g *= m);
                        }
                        close(
                            &va,
                            &vb,
                            &format!("{model} grad {name} (dense grads {dense_grads})"),
                        );
                    }
                    (None, None) => {}
                    _ => panic!("{model}: gradient of {name} present on one path only"),
                }
            }
        }
    }
}
