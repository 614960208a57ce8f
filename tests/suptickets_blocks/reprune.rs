//! Re-pruning on a real `resnet18 --width 0.25` store against a host reference, the frozen first
//! layer, and the whole superposition on `cuda:0` against the CPU.

use super::*;

/// Keeps the k largest |a| (ties to the lower index) of the flat concatenation.
fn host_topk(a: &[f32], k: usize) -> Vec<bool> {
    let key = |x: f32| x.to_bits() & 0x7fff_ffff;
    let mut idx: Vec<usize> = (0..a.len()).collect();
    idx.sort_by(|&x, &y| key(a[y]).cmp(&key(a[x])).then(x.cmp(&y)));
    let mut sel = vec![false; a.len()];
    for &i in &idx[..k] {
        sel[i] = true;
    }
    sel
}

/// The host reference of a re-pruning of the averaged values `avg` (flat over layers of
/// `sizes`): the global top-`total`, or per layer the top-`active[l]`.
fn host_reprune(
    avg: &[f32],
    reprune: Reprune,
    total: usize,
    sizes: &[usize],
    active: &[usize],
) -> Vec<bool> {
    match reprune {
        Reprune::Global => host_topk(avg, total),
        Reprune::Layerwise => {
            let mut sel = Vec::with_capacity(avg.len());
            let mut at = 0;
            for (l, &n) in sizes.iter().enumerate() {
                sel.extend(host_topk(&avg[at..at + n], active[l]));
                at += n;
            }
            sel
        }
    }
}

#[test]
fn repruned_density_is_exact_on_resnet18() {
    for (reprune, density) in [
        (Reprune::Global, None),
        (Reprune::Global, Some(0.07)),
        (Reprune::Layerwise, None),
    ] {
        let mut net = resnet_quarter();
        init_random_masks(&mut net.store, &mask_init(3)).unwrap();
        let mut r = Rng::new(7);
        fake_cycle(&mut net.store, &mut r, 0);
        let ids = net.store.maskable_ids();
        let sizes: Vec<usize> = ids
            .iter()
            .map(|&i| net.store.param(i).value.numel())
            .collect();
        let total: usize = sizes.iter().sum();
        let active0 = active_counts(&net.store).unwrap();
        let cfg = SuperposeConfig {
            averaging: Averaging::Cia,
            reprune,
            density,
            frozen_first: false,
        };
        let mut sup = Superposer::new(&cfg, &net.store).unwrap();
        // Host reference of S (flat over the maskable tensors), CIA and the same re-pruning.
        let mut host = flat(&net.store);
        for k in 1..=3 {
            fake_cycle(&mut net.store, &mut r, k);
            let active = active_counts(&net.store).unwrap();
            assert_eq!(active, active0, "exploration keeps every layer's count");
            let st = sup.add_ticket(k, &net.store).unwrap();
            // Expected counts.
            let want_total = match (reprune, density) {
                (Reprune::Global, Some(d)) => (d * total as f64).round() as usize,
                _ => active.iter().sum(),
            };
            assert_eq!(
                st.kept.iter().sum::<usize>(),
                want_total,
                "{reprune:?} {density:?}"
            );
            if reprune == Reprune::Layerwise {
                assert_eq!(st.kept, active);
            }
            // Host reference.
            let w = flat(&net.store);
            let avg: Vec<f32> = host
                .iter()
                .zip(&w)
                .map(|(&s, &w)| (k as f32 * s + w) / (k + 1) as f32)
                .collect();
            let sel = host_reprune(&avg, reprune, want_total, &sizes, &active);
            host = avg
                .iter()
                .zip(&sel)
                .map(|(&a, &s)| if s { a } else { 0.0 })
                .collect();
            check_ultimate(
                &sup,
                &host,
                &sel,
                &st.kept,
                &sizes,
                &format!("{reprune:?} {density:?} ticket {k}"),
            );
        }
        // The training store is untouched by superposing (training continues from W_k).
        let want = match density {
            Some(x) => (x * total as f64).round() as usize,
            None => active0.iter().sum(),
        };
        check_final(
            &sup,
            &net.store,
            want,
            &format!("{reprune:?} density {density:?}"),
        );
    }
}

/// Flat weights of the store's maskable tensors.
fn flat(s: &ParamStore) -> Vec<f32> {
    s.maskable_ids()
        .iter()
        .flat_map(|&i| v(&s.param(i).value))
        .collect()
}

/// The ultimate ticket is exactly the host reference: weights `host`, masks `sel` (flat over
/// the layers of `sizes`), and `kept` ones per layer.
fn check_ultimate(
    sup: &Superposer,
    host: &[f32],
    sel: &[bool],
    kept: &[usize],
    sizes: &[usize],
    what: &str,
) {
    let ult = sup.ultimate().unwrap();
    let got_w: Vec<f32> = ult.iter().flat_map(|u| v(&u.weight)).collect();
    let got_m: Vec<f32> = ult
        .iter()
        .flat_map(|u| v(u.mask.as_ref().unwrap()))
        .collect();
    assert_eq!(got_w, host, "{what}: weights");
    let want_m: Vec<f32> = sel.iter().map(|&s| s as u8 as f32).collect();
    assert_eq!(got_m, want_m, "{what}: masks");
    let mut at = 0;
    for (l, u) in ult.iter().enumerate() {
        let ones = v(u.mask.as_ref().unwrap())
            .iter()
            .filter(|&&m| m == 1.0)
            .count();
        assert_eq!(ones, kept[l], "layer {l}");
        assert_eq!(ones, sel[at..at + sizes[l]].iter().filter(|&&s| s).count());
        at += sizes[l];
    }
}

/// Superposing left the training store untouched, and the ultimate store keeps `want` weights.
fn check_final(sup: &Superposer, store: &ParamStore, want: usize, what: &str) {
    let total: usize = store
        .maskable_ids()
        .iter()
        .map(|&i| store.param(i).value.numel())
        .sum();
    let before = flat(store);
    let ult = sup.ultimate_store(store).unwrap();
    assert_eq!(flat(store), before);
    let d = ult
        .maskable_ids()
        .iter()
        .map(|&i| {
            v(ult.param(i).mask().unwrap())
                .iter()
                .filter(|&&m| m != 0.0)
                .count()
        })
        .sum::<usize>();
    assert_eq!(d, want, "{what}: final density");
    println!(
        "{what}: ultimate ticket keeps {d} of {total} ({:.4})",
        d as f64 / total as f64
    );
}

#[cfg(feature = "cuda")]
#[test]
fn superposer_on_cuda_matches_cpu() {
    let Some(gpu) = common::gpu_device() else {
        return;
    };
    for averaging in [
        Averaging::Cia,
        Averaging::Caa,
        Averaging::Cima { beta: 0.8 },
    ] {
        for reprune in [Reprune::Global, Reprune::Layerwise] {
            let cfg = SuperposeConfig {
                averaging,
                reprune,
                density: None,
                frozen_first: false,
            };
            let mut net = resnet_quarter();
            init_random_masks(&mut net.store, &mask_init(9)).unwrap();
            let mut r = Rng::new(10);
            fake_cycle(&mut net.store, &mut r, 0);
            let mut g_store = net.store.clone();
            g_store.to_device(&gpu).unwrap();
            let mut cpu = Superposer::new(&cfg, &net.store).unwrap();
            let mut cuda = Superposer::new(&cfg, &g_store).unwrap();
            let mut bn_c = BnAverager::new(averaging, &net.store).unwrap();
            let mut bn_g = BnAverager::new(averaging, &g_store).unwrap();
            for k in 1..=3 {
                fake_cycle(&mut net.store, &mut r, k);
                let mut g_store = net.store.clone();
                g_store.to_device(&gpu).unwrap();
                assert_eq!(
                    cpu.add_ticket(k, &net.store).unwrap(),
                    cuda.add_ticket(k, &g_store).unwrap(),
                    "{averaging} {reprune:?} ticket {k}: kept counts"
                );
                bn_c.add_ticket(k, &net.store).unwrap();
                bn_g.add_ticket(k, &g_store).unwrap();
            }
            for (c, g) in cpu.ultimate().unwrap().iter().zip(cuda.ultimate().unwrap()) {
                assert_eq!(
                    v(&c.weight),
                    v(&g.weight),
                    "{averaging} {reprune:?}: weights"
                );
                assert_eq!(
                    v(c.mask.as_ref().unwrap()),
                    v(g.mask.as_ref().unwrap()),
                    "{averaging} {reprune:?}: masks"
                );
            }
            for ((_, c), (_, g)) in cpu.dense_params().iter().zip(cuda.dense_params()) {
                assert_close("dense params", &v(g), &v(c), 1e-5);
            }
            for ((_, _, c), (_, _, g)) in bn_c.buffers().iter().zip(bn_g.buffers()) {
                assert_close("bn statistics", &v(g), &v(c), 1e-5);
            }
        }
    }
}

/// `--dense-first-layer`: the frozen first conv carries an all-ones mask, but the global
/// re-pruning must leave it whole. Here its weights are the smallest of the model, so a
/// re-pruning that treated it as maskable would strip it (it did before the fix).
#[test]
fn global_reprune_keeps_the_frozen_first_layer_whole() {
    let mut s = ParamStore::default();
    s.add_param("first.weight", t(&[0.01; 4]), ParamRole::Weight);
    s.add_param("b.weight", t(&[0.0; 6]), ParamRole::Weight);
    let b_ticket = |k: usize| -> ([f32; 6], [f32; 6]) {
        let mut w = [0.0; 6];
        let mut m = [0.0; 6];
        // Two active weights of size ~1, at positions that move with k.
        for j in [k % 6, (k + 3) % 6] {
            w[j] = 1.0 + j as f32;
            m[j] = 1.0;
        }
        (w, m)
    };
    let set = |s: &mut ParamStore, k: usize| {
        s.params[0].value = t(&[0.01 * (k + 1) as f32; 4]);
        s.params[0].set_mask(Some(t(&[1.0; 4])));
        let (w, m) = b_ticket(k);
        s.params[1].value = t(&w);
        s.params[1].set_mask(Some(t(&m)));
    };
    for frozen_first in [false, true] {
        set(&mut s, 0);
        let cfg = SuperposeConfig {
            averaging: Averaging::Cia,
            reprune: Reprune::Global,
            density: None,
            frozen_first,
        };
        let mut sup = Superposer::new(&cfg, &s).unwrap();
        for k in 1..3 {
            set(&mut s, k);
            sup.add_ticket(k, &s).unwrap();
        }
        let mut out = s.clone();
        sup.apply_to(&mut out).unwrap();
        let first_mask = out.params[0].mask().unwrap().to_vec().unwrap();
        let b_mask = out.params[1].mask().unwrap().to_vec().unwrap();
        let active = |m: &[f32]| m.iter().filter(|&&v| v != 0.0).count();
        if frozen_first {
            assert_eq!(first_mask, vec![1.0; 4], "the frozen layer stays whole");
            let w = out.params[0].value.to_vec().unwrap();
            assert!(
                w.iter().all(|&v| (v - 0.02).abs() < 1e-7),
                "CIA mean: {w:?}"
            );
            assert_eq!(active(&b_mask), 2, "b keeps its ticket's count");
        } else {
            // Treated as maskable, the small first layer loses to b's averaged weights.
            assert!(active(&first_mask) < 4, "{first_mask:?}");
            assert_eq!(active(&first_mask) + active(&b_mask), 6);
        }
    }
}
