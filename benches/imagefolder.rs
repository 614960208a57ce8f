//! Decode + transform throughput of `--dataset imagefolder`: images/s of the training
//! transform (random-resized crop + flip) and the evaluation transform (resize + centre crop)
//! on 500×375 JPEGs (ImageNet's typical size) at S = 224, with 1 and 2 decode threads.
//!
//! `cargo bench --bench imagefolder` (`-- N` sets the number of images, default 256). The
//! JPEGs are written to a temporary folder first: a smooth colour field plus pixel noise at
//! quality 90, so that the entropy-coded data is about as dense as a photograph's (~110 KB,
//! ImageNet's mean). Besides wall-clock images/s it prints the process CPU time per image,
//! which a machine shared with other work inflates much less than wall-clock time.

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
                let noise = (rng.uniform() - 0.5) * 32.0;
                px.push((b + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    Encoder::new_file(path, 90)
        .unwrap()
        .encode(&px, w as u16, h as u16, ColorType::Rgb)
        .unwrap();
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    let root = std::env::temp_dir().join(format!("suptickets-bench-imagefolder-v2-{n}"));
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
    // Decoding alone, on this thread: the share of the transform's cost.
    let t = Instant::now();
    let f = ImageFolder::open(&root, Split::Train, &FolderOptions::default()).unwrap();
    println!(
        "scan with structure checks (2 threads, warm page cache): {:.1} µs per file",
        1e6 * t.elapsed().as_secs_f64() / f.len() as f64
    );
    let (t, cpu0) = (Instant::now(), cpu_seconds());
    for i in 0..f.len() {
        std::hint::black_box(suptickets::data::jpeg::read(f.file(i)).unwrap());
    }
    let (s, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    println!(
        "decode only, 1 thread:            {:>7.1} images/s, {:.2} CPU-ms per image",
        f.len() as f64 / s,
        1e3 * cpu / f.len() as f64
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
            let (t, cpu0) = (Instant::now(), cpu_seconds());
            let seen: usize = l.epoch(1).map(|b| b.unwrap().n).sum();
            let (s, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
            println!(
                "{:<5} transform, {threads} decode thread(s): {:>7.1} images/s ({seen} in {s:.2} s), \
                 {:.2} CPU-ms per image",
                if split == Split::Train { "train" } else { "eval" },
                seen as f64 / s,
                1e3 * cpu / seen as f64
            );
        }
    }
}
