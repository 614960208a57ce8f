//! The kernel registry (`src/backend/registry.rs`) against the sources, in both directions:
//! every `__global__` kernel in `kernels/*.cu` is registered under its file's family and every
//! registered kernel is defined there; every registered kernel has its CPU twin
//! `pub fn <name>` in `src/backend/cpu/<family>.rs` and a `fn parity_<name>` test in
//! `tests/parity/<family>.rs`; every family has `src/backend/cuda/<family>.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use suptickets::backend::registry::{self, KERNELS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Removes `//` and `/* */` comments (kernel sources have no comment markers in strings).
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Drops every `__launch_bounds__(...)` from a declaration.
fn drop_launch_bounds(s: &str) -> String {
    let mut s = s.to_string();
    while let Some(at) = s.find("__launch_bounds__") {
        let close = s[at..].find(')').map_or(s.len(), |i| at + i + 1);
        s.replace_range(at..close, " ");
    }
    s
}

/// The names of the `__global__` functions of a CUDA source.
fn global_kernels(src: &str) -> Vec<String> {
    let src = strip_comments(src);
    src.split("__global__")
        .skip(1)
        .map(|decl| {
            let decl = drop_launch_bounds(&decl[..decl.find('{').unwrap_or(decl.len())]);
            let head = &decl[..decl.find('(').expect("a kernel declaration has a '('")];
            head.split_whitespace()
                .last()
                .expect("a kernel declaration has a name")
                .to_string()
        })
        .collect()
}

/// family -> kernel names found in kernels/<family>.cu.
fn kernels_in_sources() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let dir = root().join("kernels");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cu") {
            let family = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.insert(family, global_kernels(&read(&path)));
        }
    }
    out
}

/// True if `src` defines `fn <name>` (with the given prefix, e.g. `pub fn `) followed by `(`
/// or `<`.
fn defines_fn(src: &str, prefix: &str, name: &str) -> bool {
    let needle = format!("{prefix}{name}");
    src.match_indices(&needle).any(|(i, _)| {
        let before_ok = i == 0 || {
            let b = src.as_bytes()[i - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let after = src[i + needle.len()..].trim_start();
        before_ok && (after.starts_with('(') || after.starts_with('<'))
    })
}

#[test]
fn parser_finds_kernels_with_launch_bounds_and_ignores_comments() {
    let src = "// __global__ void commented(int)\nextern \"C\" __global__ void __launch_bounds__(256)\n\
               sgemm_f32(int a) { }\n/* __global__ void gone() */ extern \"C\" __global__ void b_f32(float* x) {}";
    assert_eq!(global_kernels(src), vec!["sgemm_f32", "b_f32"]);
    assert!(defines_fn(
        "pub fn add_f32(a: &[f32])",
        "pub fn ",
        "add_f32"
    ));
    assert!(!defines_fn(
        "pub fn add_f32x(a: &[f32])",
        "pub fn ",
        "add_f32"
    ));
}

#[test]
fn every_cuda_kernel_is_registered_under_its_family_and_vice_versa() {
    let sources = kernels_in_sources();
    let mut seen = BTreeSet::new();
    for (family, names) in &sources {
        for name in names {
            assert!(
                seen.insert(name.clone()),
                "kernel {name} is defined twice in kernels/"
            );
            let k = KERNELS.iter().find(|k| k.name == name).unwrap_or_else(|| {
                panic!("kernels/{family}.cu defines {name}, which is not in the registry")
            });
            assert_eq!(
                k.family, family,
                "{name} is in kernels/{family}.cu but registered under family {}",
                k.family
            );
        }
    }
    for k in KERNELS {
        let names = sources.get(k.family).unwrap_or_else(|| {
            panic!(
                "registry family {} has no kernels/{}.cu",
                k.family, k.family
            )
        });
        assert!(
            names.iter().any(|n| n == k.name),
            "registered kernel {} is not a __global__ in kernels/{}.cu",
            k.name,
            k.family
        );
    }
    let unique: BTreeSet<_> = KERNELS.iter().map(|k| k.name).collect();
    assert_eq!(
        unique.len(),
        KERNELS.len(),
        "the registry lists a kernel twice"
    );
}

#[test]
fn every_registered_kernel_has_a_cpu_twin() {
    for k in KERNELS {
        let path = root().join(format!("src/backend/cpu/{}.rs", k.family));
        assert!(path.exists(), "no CPU family file {}", path.display());
        assert!(
            defines_fn(&read(&path), "pub fn ", k.name),
            "{} has no CPU twin `pub fn {}` in {}",
            k.name,
            k.name,
            path.display()
        );
    }
}

#[test]
fn every_registered_kernel_has_a_parity_test() {
    for k in KERNELS {
        let path = root().join(format!("tests/parity/{}.rs", k.family));
        let src = read(&path);
        assert!(
            defines_fn(&src, "fn ", &format!("parity_{}", k.name)),
            "{} has no `fn parity_{}` in tests/parity.rs or tests/parity_*.rs",
            k.name,
            k.name
        );
    }
}

#[test]
fn every_family_has_a_cuda_launch_file() {
    for family in registry::families() {
        let path = root().join(format!("src/backend/cuda/{family}.rs"));
        assert!(
            path.exists(),
            "family {family} has no launch wrappers in {}",
            path.display()
        );
    }
}

#[test]
fn families_are_contiguous_in_the_registry() {
    // registry::families() deduplicates adjacent entries only.
    let fams = registry::families();
    let unique: BTreeSet<_> = fams.iter().collect();
    assert_eq!(
        unique.len(),
        fams.len(),
        "a family's kernels are split in KERNELS: {fams:?}"
    );
}
