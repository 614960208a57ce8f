//! Checkpoints: a save/load round trip restores values, masks, momenta and batch-norm
//! statistics exactly; mismatches and missing tensors are errors naming the tensor and the file.

use std::path::PathBuf;

use suptickets::models::{build, ModelConfig};
use suptickets::train::checkpoint::{self, Checkpoint, CheckpointMeta, ModelSpec};
use suptickets::train::TrainConfig;
use suptickets::Tensor;

mod common;

fn tmp(name: &str) -> PathBuf {
    let d = common::tmp_dir("ck", name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny() -> (ModelConfig, suptickets::nn::Network) {
    let mut mc = ModelConfig::new("wrn-10-1", 10);
    mc.in_channels = 1;
    mc.width = 0.5;
    mc.seed = 9;
    let net = build(&mc).unwrap();
    (mc, net)
}

#[test]
fn round_trip_restores_everything() {
    let dir = tmp("round-trip");
    let (mc, mut net) = tiny();
    // give one weight a mask and a momentum, and perturb a BN buffer
    let p = &mut net.store.params[0];
    let n = p.value.numel();
    let shape = p.value.shape().to_vec();
    p.set_mask(Some(
        Tensor::from_vec((0..n).map(|i| (i % 2) as f32).collect(), &shape).unwrap(),
    ));
    p.momentum = Some(Tensor::from_vec((0..n).map(|i| i as f32 * 0.25).collect(), &shape).unwrap());
    let b = &mut net.store.buffers[0];
    let c = b.value.numel();
    b.value = Tensor::from_vec((0..c).map(|i| i as f32 + 0.5).collect(), &[c]).unwrap();

    let mut meta = CheckpointMeta::new(ModelSpec::from(&mc));
    meta.epoch = 3;
    meta.step = 1234;
    meta.rng = [1, 2, u64::MAX, 4];
    meta.train_config = Some(TrainConfig {
        model: "wrn-10-1".into(),
        epochs: 7,
        ..TrainConfig::default()
    });
    let path = dir.join("c.safetensors");
    checkpoint::save(&path, &net, &meta).unwrap();
    assert!(!dir.join("c.safetensors.tmp").exists());

    let (back, meta2) = checkpoint::load(&path).unwrap();
    assert_eq!(meta2, meta);
    let a = checkpoint::named_tensors(&net).unwrap();
    let b = checkpoint::named_tensors(&back).unwrap();
    assert_eq!(a, b);
    let first = &net.store.params[0].name;
    assert!(a.contains_key(&format!("{first}.mask")));
    assert!(a.contains_key(&format!("{first}.momentum")));
    assert!(a.contains_key("block1.layer.0.bn1.running_mean"));
    assert!(back.store.params[1].mask().is_none());

    // the metadata is plain JSON text in __metadata__
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let md = &header["__metadata__"];
    assert_eq!(md["format"], "\"suptickets-checkpoint\"");
    assert_eq!(md["epoch"], "3");
    assert_eq!(md["step"], "1234");
    let model: serde_json::Value = serde_json::from_str(md["model"].as_str().unwrap()).unwrap();
    assert_eq!(model["name"], "wrn-10-1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mismatches_name_the_tensor_and_the_file() {
    let dir = tmp("mismatch");
    let (mc, net) = tiny();
    let path = dir.join("m.safetensors");
    checkpoint::save(&path, &net, &CheckpointMeta::new(ModelSpec::from(&mc))).unwrap();
    let ck = Checkpoint::read(&path).unwrap();

    // a wider model: shape mismatch
    let mut wide = mc.clone();
    wide.width = 1.0;
    let mut other = build(&wide).unwrap();
    let e = ck.restore(&mut other).unwrap_err().to_string();
    assert!(
        e.contains("m.safetensors") && e.contains("conv1.weight") && e.contains("shape"),
        "{e}"
    );

    // a missing tensor
    let mut ck2 = ck.clone();
    ck2.tensors.remove("fc.bias");
    let mut same = build(&mc).unwrap();
    let e = ck2.restore(&mut same).unwrap_err().to_string();
    assert!(e.contains("fc.bias") && e.contains("m.safetensors"), "{e}");

    // an extra tensor
    let mut ck3 = ck.clone();
    ck3.tensors
        .insert("layer9.weight".into(), (vec![1], vec![0.0]));
    let e = ck3.restore(&mut same).unwrap_err().to_string();
    assert!(e.contains("layer9.weight"), "{e}");

    // not a checkpoint
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").unwrap();
    let e = Checkpoint::read(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.safetensors"), "{e}");
    let e = Checkpoint::read(&dir.join("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
