//! The deep-ensemble baseline: the average of the tickets' softmax outputs.

use super::batch_norm::{tiny_batches, tiny_bn_net};
use super::*;

#[test]
fn ensemble_averages_the_tickets_softmax() {
    let batches = tiny_batches(2, 9);
    let mut net = tiny_bn_net();
    let mut ens = Ensemble::new();
    let mut r = Rng::new(11);
    let mut lps: Vec<Vec<Vec<f32>>> = Vec::new(); // [ticket][batch] -> logprobs
    for _ in 0..3 {
        for p in &mut net.store.params {
            let x: Vec<f32> = (0..p.value.numel()).map(|_| r.normal()).collect();
            p.value = Tensor::from_vec(x, p.value.shape()).unwrap();
        }
        bn_update(&mut net, batches.clone()).unwrap();
        ens.add_ticket(&net.store).unwrap();
        lps.push(
            batches
                .iter()
                .map(|(x, _)| v(&net.logprobs(x).unwrap()))
                .collect(),
        );
    }
    assert_eq!(ens.len(), 3);
    let last: Vec<f32> = net.store.params.iter().flat_map(|p| v(&p.value)).collect();
    let rep = ens.evaluate(&mut net, batches.clone()).unwrap();
    // The network's own parameters are back.
    let now: Vec<f32> = net.store.params.iter().flat_map(|p| v(&p.value)).collect();
    assert_eq!(last, now);
    // Each ticket alone, and the average of the probabilities.
    let labels: Vec<f32> = batches.iter().flat_map(|(_, y)| v(y)).collect();
    for (m, lp) in lps.iter().enumerate() {
        let want = metrics::compute(&lp.concat(), 2, &labels).unwrap();
        assert_eq!(rep.members[m], want, "ticket {m}");
    }
    let all: Vec<Vec<f32>> = lps.iter().map(|lp| lp.concat()).collect();
    let avg: Vec<f32> = (0..all[0].len())
        .map(|i| ((all.iter().map(|a| (a[i] as f64).exp()).sum::<f64>()) / 3.0).ln() as f32)
        .collect();
    let want = metrics::compute(&avg, 2, &labels).unwrap();
    assert_eq!(rep.ensemble.n, 8);
    assert!((rep.ensemble.accuracy - want.accuracy).abs() < 1e-12);
    assert!((rep.ensemble.nll - want.nll).abs() < 1e-5);
    assert!((rep.ensemble.ece - want.ece).abs() < 1e-5);
    println!(
        "deep ensemble of 3: acc {:.3} nll {:.4} ece {:.4}; tickets acc {:?}",
        rep.ensemble.accuracy,
        rep.ensemble.nll,
        rep.ensemble.ece,
        rep.members.iter().map(|m| m.accuracy).collect::<Vec<_>>()
    );
}

// ---- memory -----------------------------------------------------------------------------------
