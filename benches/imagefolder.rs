//! Decode + transform throughput of `--dataset imagefolder`: images/s of the training
//! transform (random-resized crop + flip) and the evaluation transform (resize + centre crop)
//! on 500×375 JPEGs (ImageNet's typical size) at S = 224, with 1 and 2 decode threads.
//!
//! `cargo bench --bench imagefolder` (`-- N` sets the number of images, default 256). The
//! JPEGs are written to a temporary folder first: a smooth colour field plus pixel noise at
//! quality 90, so that the entropy-coded data is about as dense as a photograph's (~100 KB).

use std::path::Path;
use std::time::Instant;

use jpeg_encoder::{ColorType, Encoder};
use suptickets::data::{FolderOptions, ImageFolder, Loader, LoaderConfig, Split};
use suptickets::rng::Rng;

fn write_photo_like(path: &Path, w: usize, h: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let base = [
                128.0 + 100.0 * (6.0 * fx + seed as f32).sin(),
                128.0 + 90.0 * (5.0 * fy + 2.0 * fx).cos(),
                128.0 + 80.0 * (9.0 * fx * fy).sin(),
            ];
            for b in base {
                let noise = (rng.uniform() - 0.5) * 60.0;
                px.push((b + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    Encoder::new_file(path, 90)
        .unwrap()
        .encode(&px, w as u16, h as u16, ColorType::Rgb)
        .unwrap();
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    let root = std::env::temp_dir().join(format!("suptickets-bench-imagefolder-{n}"));
    if !root.join("val").is_dir() {
        for split in ["train", "val"] {
            for i in 0..n {
                let dir = root.join(split).join(format!("c{}", i % 4));
                std::fs::create_dir_all(&dir).unwrap();
                write_photo_like(&dir.join(format!("{i}.JPEG")), 500, 375, i as u64);
            }
        }
    }
    let bytes: u64 = std::fs::read_dir(root.join("train/c0"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "{n} JPEGs of 500×375, mean {:.0} KB; CPU threads available: {}",
        bytes as f64 / (n / 4) as f64 / 1024.0,
        std::thread::available_parallelism().map_or(1, |v| v.get())
    );
    for threads in [1, 2] {
        for split in [Split::Train, Split::Test] {
            let opts = FolderOptions {
                image_size: 224,
                skip_bad: false,
                decode_threads: threads,
            };
            let f = ImageFolder::open(&root, split, &opts).unwrap();
            let cfg = match split {
                Split::Train => LoaderConfig::train(32, 0),
                Split::Test => LoaderConfig::eval(32),
            };
            let l = Loader::new(f, cfg).unwrap();
            let _ = l.batch(0, 0); // warm the page cache and the pool
            let t = Instant::now();
            let seen: usize = l.epoch(1).map(|b| b.n).sum();
            let s = t.elapsed().as_secs_f64();
            println!(
                "{:<5} transform, {threads} decode thread(s): {:>7.1} images/s ({seen} in {s:.2} s)",
                if split == Split::Train { "train" } else { "eval" },
                seen as f64 / s
            );
        }
    }
}
