//! Whole [`Backend`] methods on `Device::Cpu` and `Device::cuda(0)`.

use super::*;

#[test]
fn backend_conv2d_stride2_pad1_fwd_and_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(30);
    for p in [
        conv_params(4, 3, 11, 11, 8, 3, 2, 1),
        conv_params(3, 8, 8, 8, 16, 3, 1, 1),
        conv_params(5, 16, 6, 6, 4, 1, 1, 0),
        conv_params(2, 4, 9, 9, 6, 1, 2, 0),
        // Enough images that the weight gradient is split over several partial sums.
        conv_params(40, 2, 5, 5, 3, 3, 1, 1),
    ] {
        let xs = normal(&mut r, p.x_shape().iter().product());
        let ws = normal(&mut r, p.w_shape().iter().product());
        let bs = normal(&mut r, p.c_out as usize);
        let dys = normal(&mut r, p.y_shape().iter().product());
        let ms = mask(&mut r, ws.len(), 0.3);
        let (cx, gx) = both(&g, &xs, &p.x_shape());
        let (cw, gw) = both(&g, &ws, &p.w_shape());
        let (cb, gb) = both(&g, &bs, &[p.c_out as usize]);
        let (cdy, gdy) = both(&g, &dys, &p.y_shape());
        let (cm, gm) = both(&g, &ms, &p.w_shape());
        let what = format!("{p:?}");
        assert_tensor_close(
            &format!("conv fwd {what}"),
            &g.conv2d_fwd(&gx, &gw, Some(&gb), &p).unwrap(),
            &cpu_be().conv2d_fwd(&cx, &cw, Some(&cb), &p).unwrap(),
        );
        assert_tensor_close(
            &format!("conv fwd (no bias) {what}"),
            &g.conv2d_fwd(&gx, &gw, None, &p).unwrap(),
            &cpu_be().conv2d_fwd(&cx, &cw, None, &p).unwrap(),
        );
        assert_tensor_close(
            &format!("conv bwd input {what}"),
            &g.conv2d_bwd_input(&gdy, &gw, &p).unwrap(),
            &cpu_be().conv2d_bwd_input(&cdy, &cw, &p).unwrap(),
        );
        assert_tensor_close(
            &format!("conv bwd weight {what}"),
            &g.conv2d_bwd_weight(&gx, &gdy, &p, None).unwrap(),
            &cpu_be().conv2d_bwd_weight(&cx, &cdy, &p, None).unwrap(),
        );
        assert_tensor_close(
            &format!("conv bwd weight masked {what}"),
            &g.conv2d_bwd_weight(&gx, &gdy, &p, Some(&gm)).unwrap(),
            &cpu_be()
                .conv2d_bwd_weight(&cx, &cdy, &p, Some(&cm))
                .unwrap(),
        );
        assert_tensor_close(
            &format!("bias grad {what}"),
            &g.channel_sum(&gdy).unwrap(),
            &cpu_be().channel_sum(&cdy).unwrap(),
        );
    }
}

#[test]
fn backend_conv2d_chunked_over_the_im2col_budget() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(31);
    // 36 x 64 columns per image; a budget of 5,000 floats takes two images a chunk, so 7 images
    // run as 4 chunks (the last one short). Small enough for the virtual GPU; the budget is
    // process-wide, so the other conv tests running meanwhile are chunked too (same results).
    suptickets::backend::cuda::conv::set_im2col_budget(5_000);
    let p = conv_params(7, 4, 8, 8, 8, 3, 1, 1);
    let xs = normal(&mut r, p.x_shape().iter().product());
    let ws: Vec<f32> = normal(&mut r, p.w_shape().iter().product())
        .iter()
        .map(|v| v * 0.05)
        .collect();
    let dys = normal(&mut r, p.y_shape().iter().product());
    let (cx, gx) = both(&g, &xs, &p.x_shape());
    let (cw, gw) = both(&g, &ws, &p.w_shape());
    let (cdy, gdy) = both(&g, &dys, &p.y_shape());
    assert_tensor_close(
        "chunked conv fwd",
        &g.conv2d_fwd(&gx, &gw, None, &p).unwrap(),
        &cpu_be().conv2d_fwd(&cx, &cw, None, &p).unwrap(),
    );
    assert_tensor_close(
        "chunked conv bwd input",
        &g.conv2d_bwd_input(&gdy, &gw, &p).unwrap(),
        &cpu_be().conv2d_bwd_input(&cdy, &cw, &p).unwrap(),
    );
    // A weight gradient is a long sum that can cancel to near 0: each error is measured against
    // the gradient's RMS (seen on an H200 with 130 images of 32x32, 133,120 products a weight:
    // 8.8e-4 absolute at an entry of 0.42, i.e. 2.4e-6 of the RMS).
    assert_close_scaled(
        "chunked conv bwd weight",
        &g.conv2d_bwd_weight(&gx, &gdy, &p, None).unwrap(),
        &cpu_be().conv2d_bwd_weight(&cx, &cdy, &p, None).unwrap(),
        1e-4,
    );
}

#[test]
fn backend_linear_fwd_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(32);
    for (n, din, dout) in [(128, 512, 10), (3, 7, 5), (64, 100, 300)] {
        let (cx, gx) = both(&g, &normal(&mut r, n * din), &[n, din]);
        let (cw, gw) = both(&g, &normal(&mut r, dout * din), &[dout, din]);
        let (cb, gb) = both(&g, &normal(&mut r, dout), &[dout]);
        let (cdy, gdy) = both(&g, &normal(&mut r, n * dout), &[n, dout]);
        let (cm, gm) = both(&g, &mask(&mut r, dout * din, 0.1), &[dout, din]);
        let what = format!("n{n} in{din} out{dout}");
        assert_tensor_close(
            &format!("linear fwd {what}"),
            &g.linear_fwd(&gx, &gw, Some(&gb)).unwrap(),
            &cpu_be().linear_fwd(&cx, &cw, Some(&cb)).unwrap(),
        );
        assert_tensor_close(
            &format!("linear bwd input {what}"),
            &g.linear_bwd_input(&gdy, &gw).unwrap(),
            &cpu_be().linear_bwd_input(&cdy, &cw).unwrap(),
        );
        assert_tensor_close(
            &format!("linear bwd weight {what}"),
            &g.linear_bwd_weight(&gx, &gdy, None).unwrap(),
            &cpu_be().linear_bwd_weight(&cx, &cdy, None).unwrap(),
        );
        assert_tensor_close(
            &format!("linear bwd weight masked {what}"),
            &g.linear_bwd_weight(&gx, &gdy, Some(&gm)).unwrap(),
            &cpu_be().linear_bwd_weight(&cx, &cdy, Some(&cm)).unwrap(),
        );
    }
}

#[test]
fn backend_batchnorm_train_eval_and_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(33);
    for shape in [vec![16, 8, 7, 7], vec![128, 20], vec![4, 3, 2, 5, 5]] {
        let c = shape[1];
        let len: usize = shape.iter().product();
        let (cx, gx) = both(&g, &uniform(&mut r, len, -1.0, 4.0), &shape);
        let (cdy, gdy) = both(&g, &normal(&mut r, len), &shape);
        let (cg, gg) = both(&g, &uniform(&mut r, c, 0.5, 1.5), &[c]);
        let (cb, gb) = both(&g, &normal(&mut r, c), &[c]);
        let cf = cpu_be().batchnorm_fwd_train(&cx, &cg, &cb, 1e-5).unwrap();
        let gf = g.batchnorm_fwd_train(&gx, &gg, &gb, 1e-5).unwrap();
        let what = format!("{shape:?}");
        assert_tensor_close(&format!("bn train y {what}"), &gf.y, &cf.y);
        assert_tensor_close(&format!("bn train mean {what}"), &gf.mean, &cf.mean);
        assert_tensor_close(&format!("bn train var {what}"), &gf.var, &cf.var);
        assert_tensor_close(&format!("bn train invstd {what}"), &gf.invstd, &cf.invstd);
        let cbw = cpu_be()
            .batchnorm_bwd(&cdy, &cx, &cg, &cf.mean, &cf.invstd)
            .unwrap();
        let gbw = g
            .batchnorm_bwd(&gdy, &gx, &gg, &gf.mean, &gf.invstd)
            .unwrap();
        assert_tensor_close(&format!("bn dx {what}"), &gbw.dx, &cbw.dx);
        assert_tensor_close(&format!("bn dgamma {what}"), &gbw.dgamma, &cbw.dgamma);
        assert_tensor_close(&format!("bn dbeta {what}"), &gbw.dbeta, &cbw.dbeta);
        let (cm, gm) = both(&g, &normal(&mut r, c), &[c]);
        let (cv, gv) = both(&g, &uniform(&mut r, c, 0.1, 2.0), &[c]);
        assert_tensor_close(
            &format!("bn eval {what}"),
            &g.batchnorm_fwd_eval(&gx, &gg, &gb, &gm, &gv, 1e-5).unwrap(),
            &cpu_be()
                .batchnorm_fwd_eval(&cx, &cg, &cb, &cm, &cv, 1e-5)
                .unwrap(),
        );
    }
}

#[test]
fn backend_cross_entropy_fwd_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(34);
    for (n, k) in [(128, 10), (5, 100), (1, 3)] {
        let (cl, gl) = both(&g, &normal(&mut r, n * k), &[n, k]);
        let (cy, gy) = both(&g, &labels(&mut r, n, k), &[n]);
        let (closs, clp) = cpu_be().cross_entropy_fwd(&cl, &cy).unwrap();
        let (gloss, glp) = g.cross_entropy_fwd(&gl, &gy).unwrap();
        assert_tensor_close(&format!("ce loss n{n} k{k}"), &gloss, &closs);
        assert_tensor_close(&format!("ce logprobs n{n} k{k}"), &glp, &clp);
        assert_tensor_close(
            &format!("ce bwd n{n} k{k}"),
            &g.cross_entropy_bwd(&glp, &gy, 2.5).unwrap(),
            &cpu_be().cross_entropy_bwd(&clp, &cy, 2.5).unwrap(),
        );
    }
    // A label that is not a class index is an error on the CPU backend (it holds the labels);
    // the CUDA backend does not read labels back: the row's loss is NaN, and the backward pass
    // of every row agrees with the CPU twin (no one-hot term for the bad row).
    let logits = normal(&mut r, 6);
    let (cl, gl) = both(&g, &logits, &[2, 3]);
    let (cy, gy) = both(&g, &[1.0, 3.0], &[2]);
    assert!(matches!(
        cpu_be().cross_entropy_fwd(&cl, &cy),
        Err(Error::Shape(_))
    ));
    let (gloss, glp) = g.cross_entropy_fwd(&gl, &gy).unwrap();
    assert!(gloss.to_vec().unwrap()[0].is_nan());
    let (mut lp, mut nll) = (vec![0.0; 6], vec![0.0; 2]);
    cpu::loss::log_softmax_ce_fwd_f32(&logits, &[1.0, 3.0], 2, 3, &mut lp, &mut nll);
    assert!(nll[1].is_nan() && nll[0].is_finite());
    assert_close("ce logprobs, bad label", &glp.to_vec().unwrap(), &lp);
    let mut d = vec![0.0; 6];
    cpu::loss::log_softmax_ce_bwd_f32(&lp, &[1.0, 3.0], 2, 3, 2.5 / 2.0, &mut d);
    assert_close(
        "ce bwd, bad label",
        &g.cross_entropy_bwd(&glp, &gy, 2.5)
            .unwrap()
            .to_vec()
            .unwrap(),
        &d,
    );
}

#[test]
fn backend_sgd_with_mask() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(35);
    let shape = [64, 3, 3, 3];
    let len: usize = shape.iter().product();
    let p = SgdParams {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-4,
        nesterov: 1,
    };
    let (mut cw, mut gw) = both(&g, &normal(&mut r, len), &shape);
    let (mut cm, mut gm) = both(&g, &vec![0.0; len], &shape);
    let (cmask, gmask) = both(&g, &mask(&mut r, len, 0.1), &shape);
    for step in 0..3 {
        let (cg, gg) = both(&g, &normal(&mut r, len), &shape);
        cpu_be()
            .sgd_step(&mut cw, &cg, &mut cm, Some(&cmask), &p)
            .unwrap();
        g.sgd_step(&mut gw, &gg, &mut gm, Some(&gmask), &p).unwrap();
        assert_tensor_close(&format!("sgd w step {step}"), &gw, &cw);
        assert_tensor_close(&format!("sgd m step {step}"), &gm, &cm);
    }
}

#[test]
fn backend_pool_relu_elementwise() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(36);
    let p = pool_params((4, 8, 16, 16, 2, 2, 0));
    let (cx, gx) = both(
        &g,
        &tied(&mut r, p.x_shape().iter().product()),
        &p.x_shape(),
    );
    let (cdy, gdy) = both(
        &g,
        &normal(&mut r, p.y_shape().iter().product()),
        &p.y_shape(),
    );
    let (cy, ci) = cpu_be().maxpool2d_fwd(&cx, &p).unwrap();
    let (gy, gi) = g.maxpool2d_fwd(&gx, &p).unwrap();
    assert_tensor_close("maxpool y", &gy, &cy);
    assert_eq!(down(&gi), down(&ci), "maxpool idx");
    assert_tensor_close(
        "maxpool dx",
        &g.maxpool2d_bwd(&gdy, &gi, &p).unwrap(),
        &cpu_be().maxpool2d_bwd(&cdy, &ci, &p).unwrap(),
    );
    assert_tensor_close(
        "avgpool y",
        &g.avgpool2d_fwd(&gx, &p).unwrap(),
        &cpu_be().avgpool2d_fwd(&cx, &p).unwrap(),
    );
    assert_tensor_close(
        "avgpool dx",
        &g.avgpool2d_bwd(&gdy, &p).unwrap(),
        &cpu_be().avgpool2d_bwd(&cdy, &p).unwrap(),
    );
    let gr = g.relu_fwd(&gx).unwrap();
    let cr = cpu_be().relu_fwd(&cx).unwrap();
    assert_tensor_close("relu fwd", &gr, &cr);
    let (cd, gd) = both(&g, &normal(&mut r, cx.numel()), cx.shape());
    assert_tensor_close(
        "relu bwd",
        &g.relu_bwd(&gd, &gr).unwrap(),
        &cpu_be().relu_bwd(&cd, &cr).unwrap(),
    );
    assert_tensor_close(
        "add",
        &g.add(&gx, &gd).unwrap(),
        &cpu_be().add(&cx, &cd).unwrap(),
    );
    assert_tensor_close(
        "mul",
        &g.mul(&gx, &gd).unwrap(),
        &cpu_be().mul(&cx, &cd).unwrap(),
    );
    let (mut cyy, mut gyy) = (cd.clone(), gd.clone());
    cpu_be().axpby(2.0, &cx, 0.5, &mut cyy).unwrap();
    g.axpby(2.0, &gx, 0.5, &mut gyy).unwrap();
    assert_tensor_close("axpby", &gyy, &cyy);
    // Copy-on-write: gd shared its storage with gyy and must be unchanged.
    assert_tensor_close("axpby left the shared tensor alone", &gd, &cd);
}

#[test]
fn backend_errors_name_devices_and_shapes() {
    let g = gpu_or_skip!();
    let cpu_t = Tensor::from_vec(vec![1.0; 6], &[2, 3]).unwrap();
    let gpu_t = up(&g, &[1.0; 6], &[2, 3]);
    match g.relu_fwd(&cpu_t) {
        Err(Error::Device(m)) => assert!(m.contains("cuda:0") && m.contains("cpu"), "{m}"),
        other => panic!("expected a device error, got {other:?}"),
    }
    match g.add(&gpu_t, &up(&g, &[1.0; 6], &[3, 2])) {
        Err(Error::Shape(m)) => assert!(m.contains("[2, 3]") && m.contains("[3, 2]"), "{m}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    let p = conv_params(2, 3, 8, 8, 4, 3, 1, 1);
    match g.conv2d_fwd(&up(&g, &[0.0; 10], &[10]), &gpu_t, None, &p) {
        Err(Error::Shape(m)) => assert!(m.contains("conv2d_fwd: x"), "{m}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    let dev = g.device();
    assert_eq!(dev.name(), "cuda:0");
    assert!(gpu_t.device().same_as(&dev));
    assert_eq!(
        gpu_t.to_device(&Device::Cpu).unwrap().to_vec().unwrap(),
        vec![1.0; 6]
    );
}

#[test]
fn backend_empty_tensors_and_one_backend_per_gpu() {
    let g = gpu_or_skip!();
    // Separate Device::cuda(0) calls share one backend, so their tensors work together.
    let a = Device::cuda(0).unwrap();
    let b = Device::parse("cuda").unwrap();
    assert!(a.same_as(&b) && a.same_as(&g.device()));
    let x = Tensor::from_slice(&[1.0, -2.0], &[2], &a).unwrap();
    let y = Tensor::from_slice(&[3.0, 4.0], &[2], &b).unwrap();
    assert_eq!(down(&a.backend().add(&x, &y).unwrap()), vec![4.0, 2.0]);
    // Zero-element tensors: no zero-byte allocations, no launches, empty results.
    let e = up(&g, &[], &[0, 3]);
    assert_eq!(down(&e), Vec::<f32>::new());
    assert_eq!(down(&g.relu_fwd(&e).unwrap()), Vec::<f32>::new());
    assert_eq!(g.zeros(&[0]).unwrap().numel(), 0);
    assert_eq!(g.sum_f32(&e).unwrap(), 0.0);
    assert_tensor_close(
        "channel_sum of an empty batch",
        &g.channel_sum(&e).unwrap(),
        &cpu_be()
            .channel_sum(&Tensor::from_vec(vec![], &[0, 3]).unwrap())
            .unwrap(),
    );
}
