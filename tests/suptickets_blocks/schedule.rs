//! The budget split and the triangle learning rate with its cycle boundaries.

use super::*;

#[test]
fn budget_split() {
    let b = Budget::new(250, 8, 0.1).unwrap();
    assert_eq!((b.normal_epochs, b.cyclic_epochs, b.tickets), (226, 24, 3));
    // r·E < C: no cyclic phase, every epoch normal, no capture.
    let b = Budget::new(60, 8, 0.1).unwrap();
    assert_eq!((b.normal_epochs, b.cyclic_epochs, b.tickets), (60, 0, 0));
    let s = SupSchedule::new(b, 10, 0.001, 0.005).unwrap();
    assert!((0..600).all(|i| s.phase(i) == Phase::Normal && s.capture(i).is_none()));
    assert_eq!(s.phase(600), Phase::Done);
    assert_eq!(s.cyclic_lr(599), None);
}

#[test]
fn triangle_lr_and_cycle_boundaries() {
    // E = 30, C = 2, r = 0.2: 3 cycles of 2 epochs after P = 24; I = 10, so a cycle is L = 20
    // iterations starting at 240, 260, 280.
    let b = Budget::new(30, 2, 0.2).unwrap();
    assert_eq!((b.normal_epochs, b.tickets), (24, 3));
    let (a1, a2) = (0.001f32, 0.005f32);
    let s = SupSchedule::new(b, 10, a1, a2).unwrap();
    assert_eq!(
        (s.normal_iters(), s.cycle_iters(), s.total_iters()),
        (240, 20, 300)
    );
    let close = |x: Option<f32>, y: f32| {
        let x = x.unwrap();
        assert!((x - y).abs() < 1e-9, "{x} vs {y}");
    };
    for start in [240, 260, 280] {
        // Start: τ = 1/20, so 0.9 α1 + 0.1 α2 (α1 at the boundary itself, τ → 0).
        close(s.cyclic_lr(start), 0.9 * a1 + 0.1 * a2);
        // Quarter (τ = 5/20): (α1 + α2)/2.
        close(s.cyclic_lr(start + 4), 0.5 * (a1 + a2));
        // Middle (τ = 1/2): α2.
        close(s.cyclic_lr(start + 9), a2);
        // Three quarters: (α1 + α2)/2 again; end of the cycle (τ = 1): α1.
        close(s.cyclic_lr(start + 14), 0.5 * (a1 + a2));
        close(s.cyclic_lr(start + 19), a1);
    }
    assert_eq!(s.cyclic_lr(239), None);
    assert_eq!(s.phase(239), Phase::Normal);
    assert_eq!(s.phase(265), Phase::Cycle { ticket: 2, step: 5 });
    // Exploration at each cycle start; captures: ticket 0 after the last normal step, ticket k
    // after the last step of cycle k.
    let starts: Vec<(usize, usize)> = (0..300)
        .filter_map(|i| s.cycle_start(i).map(|k| (i, k)))
        .collect();
    assert_eq!(starts, vec![(240, 1), (260, 2), (280, 3)]);
    let caps: Vec<(usize, usize)> = (0..300)
        .filter_map(|i| s.capture(i).map(|k| (i, k)))
        .collect();
    assert_eq!(caps, vec![(239, 0), (259, 1), (279, 2), (299, 3)]);
    assert_eq!(s.capture_iter(3), Some(299));
    assert_eq!(s.capture_iter(4), None);
}

// ---- superposition on hand-made tensors -------------------------------------------------------
