//! Bad flags, files and devices: clear, non-panicking errors naming the flag, file or device.

use super::*;

#[test]
fn bad_flags_fail_clearly() {
    let out = tmp("bad-model");
    let out = out.to_str().unwrap();
    fails_clearly(
        &run(&["train", "--model", "alexnet", "--quiet", "--out", out]),
        "unknown model",
    );
    for (args, needle) in BAD_FLAGS {
        let mut a = vec!["train"];
        a.extend_from_slice(args);
        fails_clearly(&run(&a), needle);
    }
}

/// `train` flags (after `train`) that must fail, each with what the message must contain.
const BAD_FLAGS: &[(&[&str], &str)] = &[
    (&["--dataset", "mnist", "--quiet"], "unknown dataset"),
    (&["--schedule", "linear", "--quiet"], "linear"),
    (&["--epochs", "0", "--quiet"], "--epochs"),
    // sparse-method flags
    (&["--method", "lottery", "--quiet"], "--method"),
    (
        &["--sparsity", "0.9", "--quiet"],
        "--sparsity has no effect with --method dense",
    ),
    (
        &["--method", "rigl", "--sparsity", "1.0", "--quiet"],
        "--sparsity must be in [0, 1)",
    ),
    (
        &["--method", "set", "--sparsity=-0.1", "--quiet"],
        "--sparsity",
    ),
    (
        &[
            "--method",
            "granet",
            "--sparsity",
            "0.8",
            "--initial-density",
            "0.1",
            "--quiet",
        ],
        "--initial-density",
    ),
    (
        &["--method", "static", "--update-interval", "10", "--quiet"],
        "--update-interval has no effect with --method static",
    ),
    (
        &["--method", "rigl", "--drop-fraction", "2", "--quiet"],
        "--drop-fraction",
    ),
    (
        &["--method", "rigl", "--drop-schedule", "linear", "--quiet"],
        "--drop-schedule",
    ),
    (
        &["--method", "rigl", "--explore-until", "1.5", "--quiet"],
        "--explore-until",
    ),
    (
        &["--method", "snip", "--snip-scope", "net", "--quiet"],
        "--snip-scope",
    ),
    (&["--no-such-flag"], "--no-such-flag"),
];

#[test]
fn bad_files_and_devices_fail_clearly() {
    // an unknown key in the TOML file is named
    let dir = tmp("bad-toml");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(&f, "model = \"wrn-10-1\"\nlearning_rate = 0.1\n").unwrap();
    fails_clearly(
        &run(&["train", "--config", f.to_str().unwrap(), "--quiet"]),
        "learning_rate",
    );
    fails_clearly(
        &run(&["train", "--config", dir.join("nope.toml").to_str().unwrap()]),
        "nope.toml",
    );

    // CUDA on a machine without a GPU (or a build without CUDA): a clear device error
    if suptickets::Device::cuda(0).is_err() {
        fails_clearly(&run(&["train", "--device", "cuda", "--quiet"]), "error:");
        let o = run(&["train", "--device", "cuda", "--quiet"]);
        assert!(stderr(&o).to_lowercase().contains("cuda"), "{}", stderr(&o));
    }
    fails_clearly(&run(&["train", "--device", "tpu", "--quiet"]), "tpu");

    // a data directory that does not exist
    let missing = dir.join("no-data-here");
    let o = run(&[
        "train",
        "--data-dir",
        missing.to_str().unwrap(),
        "--model",
        "wrn-10-1",
        "--quiet",
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    fails_clearly(&o, "no-data-here");

    fails_clearly(
        &run(&[
            "eval",
            "--checkpoint",
            dir.join("none.safetensors").to_str().unwrap(),
        ]),
        "none.safetensors",
    );
    std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint").unwrap();
    fails_clearly(
        &run(&[
            "eval",
            "--checkpoint",
            dir.join("junk.safetensors").to_str().unwrap(),
        ]),
        "junk.safetensors",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
