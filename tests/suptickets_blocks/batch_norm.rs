//! Batch norm of the superposed ticket: AV (running statistics averaged) and BU (recomputed
//! with one pass).

use super::*;

#[test]
fn bn_average_equals_running_mean_of_tickets() {
    let mut net = resnet_quarter();
    init_random_masks(&mut net.store, &mask_init(4)).unwrap();
    let mut r = Rng::new(8);
    fake_cycle(&mut net.store, &mut r, 0);
    let mut bn = BnAverager::new(Averaging::Cia, &net.store).unwrap();
    let mut sums: Vec<Vec<f64>> = net
        .store
        .buffers
        .iter()
        .map(|b| v(&b.value).iter().map(|&x| x as f64).collect())
        .collect();
    for k in 1..=4 {
        fake_cycle(&mut net.store, &mut r, k);
        bn.add_ticket(k, &net.store).unwrap();
        for (s, b) in sums.iter_mut().zip(&net.store.buffers) {
            s.iter_mut()
                .zip(v(&b.value))
                .for_each(|(s, x)| *s += x as f64);
        }
        let mut out = net.store.clone();
        bn.apply_to(&mut out).unwrap();
        for (s, b) in sums.iter().zip(&out.buffers) {
            let want: Vec<f32> = s.iter().map(|&x| (x / (k + 1) as f64) as f32).collect();
            assert_close(&b.name, &v(&b.value), &want, 1e-5);
        }
    }
    let bytes: usize = net.store.buffers.iter().map(|b| 4 * b.value.numel()).sum();
    assert_eq!(bn.extra_bytes(), bytes);
}

// ---- BU -------------------------------------------------------------------------------------

/// BN(3) -> conv 3->4 -> BN(4) -> ReLU -> global pool -> linear 4->2.
pub(crate) fn tiny_bn_net() -> Network {
    let mut store = ParamStore::default();
    let mut r = Rng::new(1);
    let mut body = Sequential::new();
    body.push(BatchNorm::new(&mut store, "bn0", 3).unwrap());
    body.push(Conv2d::new(&mut store, "conv", 3, 4, 3, 1, 1, false, &mut r).unwrap());
    body.push(BatchNorm::new(&mut store, "bn1", 4).unwrap());
    body.push(Relu);
    body.push(GlobalAvgPool);
    body.push(Flatten);
    body.push(Linear::new(&mut store, "fc", 4, 2, true, &mut r).unwrap());
    Network {
        arch: "tiny".into(),
        num_classes: 2,
        input_shape: [3, 5, 5],
        store,
        body: Box::new(body),
    }
}

/// Batches of [4, 3, 5, 5] with per-batch shifts and scales, labels 0/1.
pub(crate) fn tiny_batches(n: usize, seed: u64) -> Vec<(Tensor, Tensor)> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|b| {
            let x: Vec<f32> = (0..4 * 75)
                .map(|i| r.normal() * (1.0 + b as f32) + (i / 25 % 3) as f32 - b as f32)
                .collect();
            let y: Vec<f32> = (0..4).map(|i| (i % 2) as f32).collect();
            (
                Tensor::from_vec(x, &[4, 3, 5, 5]).unwrap(),
                Tensor::from_vec(y, &[4]).unwrap(),
            )
        })
        .collect()
}

/// Per-channel mean and unbiased variance of x [n, c, h, w].
fn channel_stats(x: &[f32], n: usize, c: usize, s: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| {
                x[(i * c + ch) * s..(i * c + ch + 1) * s]
                    .iter()
                    .map(|&v| v as f64)
            })
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        mean[ch] = m;
        var[ch] = vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (vals.len() - 1) as f64;
    }
    (mean, var)
}

#[test]
fn bn_update_is_the_cumulative_average_of_batch_statistics() {
    let batches = tiny_batches(3, 5);
    let mut net = tiny_bn_net();
    let params_before: Vec<Vec<f32>> = net.store.params.iter().map(|p| v(&p.value)).collect();
    // Put some arbitrary running statistics in first: BU must discard them.
    for b in &mut net.store.buffers {
        b.value = Tensor::full(b.value.shape(), 7.0, &Device::Cpu).unwrap();
    }
    let seen = bn_update(&mut net, batches.clone()).unwrap();
    assert_eq!(seen, 3);
    // The first BN sees the input itself: its statistics are the mean over the batches of the
    // per-batch channel mean and unbiased variance.
    let (mut mean, mut var) = (vec![0.0f64; 3], vec![0.0f64; 3]);
    for (x, _) in &batches {
        let (m, vv) = channel_stats(&v(x), 4, 3, 25);
        for c in 0..3 {
            mean[c] += m[c] / 3.0;
            var[c] += vv[c] / 3.0;
        }
    }
    let names: Vec<String> = net.store.buffers.iter().map(|b| b.name.clone()).collect();
    let name = |n: &str| names.iter().position(|b| b == n).unwrap();
    let f = |x: Vec<f64>| x.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
    assert_close(
        "bn0.running_mean",
        &v(&net.store.buffers[name("bn0.running_mean")].value),
        &f(mean),
        1e-5,
    );
    assert_close(
        "bn0.running_var",
        &v(&net.store.buffers[name("bn0.running_var")].value),
        &f(var),
        1e-5,
    );
    // The deeper BN: the average of its statistics over each batch alone.
    let mut per_batch = vec![vec![0.0f64; 4]; 2];
    for b in &batches {
        let mut one = tiny_bn_net();
        bn_update(&mut one, [b.clone()]).unwrap();
        for (j, n) in ["bn1.running_mean", "bn1.running_var"].iter().enumerate() {
            let s = v(&one.store.buffers[name(n)].value);
            per_batch[j]
                .iter_mut()
                .zip(s)
                .for_each(|(a, x)| *a += x as f64 / 3.0);
        }
    }
    for (j, n) in ["bn1.running_mean", "bn1.running_var"].iter().enumerate() {
        assert_close(
            n,
            &v(&net.store.buffers[name(n)].value),
            &f(per_batch[j].clone()),
            1e-5,
        );
    }
    // Only the statistics changed.
    let params_after: Vec<Vec<f32>> = net.store.params.iter().map(|p| v(&p.value)).collect();
    assert_eq!(params_before, params_after);
    // The momentum override is gone: a normal training step uses the layer's 0.1 again.
    let before = v(&net.store.buffers[name("bn0.running_mean")].value);
    net.forward_backward(&batches[0].0, &batches[0].1).unwrap();
    let after = v(&net.store.buffers[name("bn0.running_mean")].value);
    let (m0, _) = channel_stats(&v(&batches[0].0), 4, 3, 25);
    for c in 0..3 {
        let want = 0.9 * before[c] + 0.1 * m0[c] as f32;
        assert!((after[c] - want).abs() < 1e-5, "{} vs {want}", after[c]);
    }
}

// ---- deep ensemble --------------------------------------------------------------------------
