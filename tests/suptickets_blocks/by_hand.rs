//! CIA, CAA and CIMA superposition and the batch-norm average on a hand-made store (expected
//! values worked out by hand).

use super::*;

/// A hand-made store: maskable `a.weight` [4] and `b.weight` [3], a bias `b.bias` [2] and
/// batch-norm buffers `bn.running_mean`, `bn.running_var` [2].
fn hand_store() -> ParamStore {
    let mut s = ParamStore::default();
    s.add_param("a.weight", t(&[0.0; 4]), ParamRole::Weight);
    s.add_param("b.weight", t(&[0.0; 3]), ParamRole::Weight);
    s.add_param("b.bias", t(&[0.0; 2]), ParamRole::Bias);
    s.add_buffer("bn.running_mean", t(&[0.0; 2]));
    s.add_buffer("bn.running_var", t(&[1.0; 2]));
    s
}

/// One hand-made ticket: (a, a's mask, b, b's mask, bias, running mean, running var).
type HandTicket = (
    [f32; 4],
    [f32; 4],
    [f32; 3],
    [f32; 3],
    [f32; 2],
    [f32; 2],
    [f32; 2],
);

/// The three tickets of the hand-made cases; each has 2 active weights in `a`, 1 in `b`.
const HAND: [HandTicket; 3] = [
    (
        [1.0, 0.0, -3.0, 0.0],
        [1.0, 0.0, 1.0, 0.0],
        [0.0, 2.0, 0.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0],
        [0.0, 3.0],
        [1.0, 1.0],
    ),
    (
        [0.0, 4.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [6.0, 0.0, 0.0],
        [1.0, 0.0, 0.0],
        [3.0, -1.0],
        [2.0, 6.0],
        [3.0, 1.0],
    ),
    (
        [2.0, 0.0, 0.0, 5.0],
        [1.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 9.0],
        [0.0, 0.0, 1.0],
        [2.0, 3.0],
        [4.0, 0.0],
        [2.0, 4.0],
    ),
];

fn set_ticket(s: &mut ParamStore, k: usize) {
    let (a, am, b, bm, bias, mean, var) = HAND[k];
    s.params[0].value = t(&a);
    s.params[0].set_mask(Some(t(&am)));
    s.params[1].value = t(&b);
    s.params[1].set_mask(Some(t(&bm)));
    s.params[2].value = t(&bias);
    s.buffers[0].value = t(&mean);
    s.buffers[1].value = t(&var);
}

/// Runs the three hand-made tickets through a superposer; returns the ultimate (a, a mask, b,
/// b mask, bias).
#[allow(clippy::type_complexity)]
fn run_hand(
    averaging: Averaging,
    reprune: Reprune,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut s = hand_store();
    set_ticket(&mut s, 0);
    let cfg = SuperposeConfig {
        averaging,
        reprune,
        density: None,
        frozen_first: false,
    };
    let mut sup = Superposer::new(&cfg, &s).unwrap();
    for k in 1..3 {
        set_ticket(&mut s, k);
        let st = sup.add_ticket(k, &s).unwrap();
        assert_eq!(st.kept.iter().sum::<usize>(), 3, "ticket {k}: {st:?}");
        if reprune == Reprune::Layerwise {
            assert_eq!(st.kept, vec![2, 1]);
        }
    }
    // Out of order: an error naming the expected ticket.
    let e = sup.add_ticket(5, &s).unwrap_err();
    assert!(e.to_string().contains("expected ticket 3"), "{e}");
    let ult = sup.ultimate_store(&s).unwrap();
    (
        v(&ult.params[0].value),
        v(ult.params[0].mask().unwrap()),
        v(&ult.params[1].value),
        v(ult.params[1].mask().unwrap()),
        v(&ult.params[2].value),
    )
}

// ---- schedule -------------------------------------------------------------------------------

#[test]
fn cia_by_hand() {
    // Ticket 1: A = (S0 + W1)/2: a = [0.5, 2, -2, 0] keeps 2 and -2; b = [3, 1, 0] keeps 3.
    // Ticket 2: A = (2·S1 + W2)/3: a = [2/3, 4/3, -4/3, 5/3]: layerwise keeps 5/3 and the tie
    // 4/3 vs -4/3 goes to the lower index; b = [2, 0, 3] keeps 3. Bias: [2, 0] then [2, 1].
    let (a, am, b, bm, bias) = run_hand(Averaging::Cia, Reprune::Layerwise);
    assert_close("a", &a, &[0.0, 4.0 / 3.0, 0.0, 5.0 / 3.0], 1e-6);
    assert_eq!(am, vec![0.0, 1.0, 0.0, 1.0]);
    assert_close("b", &b, &[0.0, 0.0, 3.0], 1e-6);
    assert_eq!(bm, vec![0.0, 0.0, 1.0]);
    assert_close("bias", &bias, &[2.0, 1.0], 1e-6);
    // Global, K = 3 over a|b: [2/3, 4/3, -4/3, 5/3 | 2, 0, 3] keeps 3, 2 and 5/3.
    let (a, am, b, bm, _) = run_hand(Averaging::Cia, Reprune::Global);
    assert_close("a", &a, &[0.0, 0.0, 0.0, 5.0 / 3.0], 1e-6);
    assert_eq!(am, vec![0.0, 0.0, 0.0, 1.0]);
    assert_close("b", &b, &[2.0, 0.0, 3.0], 1e-6);
    assert_eq!(bm, vec![1.0, 0.0, 1.0]);
}

#[test]
fn caa_by_hand() {
    // Counts start at ticket 0's mask: a [1,0,1,0], b [0,1,0].
    // Ticket 1 (a mask [0,1,1,0]): a = [1 (inactive), 4/1, (1·-3 + -1)/2 = -2, 0], counts
    // [1,1,2,0], keeps 4 and -2; b (mask [1,0,0]): [6/1, 2 (inactive), 0] keeps 6.
    // Ticket 2 (a mask [1,0,0,1]): a = [(1·0 + 2)/2 = 1, 4, -2, 5/1] keeps 5 and 4;
    // b (mask [0,0,1]): [6, 0, 9/1] keeps 9. Bias as CIA: [2, 1].
    let (a, am, b, bm, bias) = run_hand(Averaging::Caa, Reprune::Layerwise);
    assert_close("a", &a, &[0.0, 4.0, 0.0, 5.0], 1e-6);
    assert_eq!(am, vec![0.0, 1.0, 0.0, 1.0]);
    assert_close("b", &b, &[0.0, 0.0, 9.0], 1e-6);
    assert_eq!(bm, vec![0.0, 0.0, 1.0]);
    assert_close("bias", &bias, &[2.0, 1.0], 1e-6);
    // Global: [1, 4, -2, 5 | 6, 0, 9] keeps 9, 6, 5.
    let (a, _, b, _, _) = run_hand(Averaging::Caa, Reprune::Global);
    assert_close("a", &a, &[0.0, 0.0, 0.0, 5.0], 1e-6);
    assert_close("b", &b, &[6.0, 0.0, 9.0], 1e-6);
}

#[test]
fn cima_by_hand() {
    // β = 0.5. Ticket 1: a = [0.5, 2, -2, 0] keeps 2, -2; b = [3, 1, 0] keeps 3; bias [2, 0].
    // Ticket 2: a = 0.5·[0,2,-2,0] + 0.5·[2,0,0,5] = [1, 1, -1, 2.5] keeps 2.5 and the first of
    // the three ties; b = [1.5, 0, 4.5] keeps 4.5; bias 0.5·[2,0] + 0.5·[2,3] = [2, 1.5].
    let (a, am, b, _, bias) = run_hand(Averaging::Cima { beta: 0.5 }, Reprune::Layerwise);
    assert_eq!(a, vec![1.0, 0.0, 0.0, 2.5]);
    assert_eq!(am, vec![1.0, 0.0, 0.0, 1.0]);
    assert_eq!(b, vec![0.0, 0.0, 4.5]);
    assert_eq!(bias, vec![2.0, 1.5]);
    // β = 0.8 (the default): ticket 1 a = 0.8·[1,0,-3,0] + 0.2·[0,4,-1,0] = [0.8, 0.8, -2.6,
    // 0], keeps -2.6 and the tie 0.8 at index 0.
    let mut s = hand_store();
    set_ticket(&mut s, 0);
    let cfg = SuperposeConfig {
        averaging: Averaging::parse("cima", 0.8).unwrap(),
        reprune: Reprune::Layerwise,
        density: None,
        frozen_first: false,
    };
    let mut sup = Superposer::new(&cfg, &s).unwrap();
    set_ticket(&mut s, 1);
    sup.add_ticket(1, &s).unwrap();
    let u = sup.ultimate().unwrap();
    assert_close("a", &v(&u[0].weight), &[0.8, 0.0, -2.6, 0.0], 1e-6);
    assert_eq!(v(u[0].mask.as_ref().unwrap()), vec![1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn bn_average_by_hand() {
    // CIA / CAA: running means of [0,3], [2,6], [4,0] -> [2, 3]; variances [1,1], [3,1],
    // [2,4] -> [2, 2]. CIMA β = 0.5: [1, 4.5] then [2.5, 2.25]; variances [2, 1] then [2, 2.5].
    for (avg, mean, var) in [
        (Averaging::Cia, [2.0, 3.0], [2.0, 2.0]),
        (Averaging::Caa, [2.0, 3.0], [2.0, 2.0]),
        (Averaging::Cima { beta: 0.5 }, [2.5, 2.25], [2.0, 2.5]),
    ] {
        let mut s = hand_store();
        set_ticket(&mut s, 0);
        let mut bn = BnAverager::new(avg, &s).unwrap();
        for k in 1..3 {
            set_ticket(&mut s, k);
            bn.add_ticket(k, &s).unwrap();
        }
        let mut out = hand_store();
        bn.apply_to(&mut out).unwrap();
        assert_close(
            &format!("{avg} mean"),
            &v(&out.buffers[0].value),
            &mean,
            1e-6,
        );
        assert_close(&format!("{avg} var"), &v(&out.buffers[1].value), &var, 1e-6);
        assert_eq!(bn.extra_bytes(), 4 * 4);
    }
}

// ---- a real store ---------------------------------------------------------------------------
