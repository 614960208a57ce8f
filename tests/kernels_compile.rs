//! Compiles every kernel family (`kernels/common.cuh` + `kernels/<family>.cu`) through NVRTC
//! for sm_80 and sm_90, with ptxas run on the result (`--ptxas-options=-v`), and checks that
//! the PTX has exactly the registry's kernels of that family as `.entry` functions. Needs NVRTC
//! only, no GPU: `source tools/nvrtc-env.sh` first. Without NVRTC the tests print
//! `skipped: NVRTC not found` and pass, unless `CI` is set (non-empty), where they fail.
//!
//! Set `SUPTICKETS_KERNEL_REPORT=<file>` to also write the per-kernel ptxas report (registers,
//! shared memory, stack, spills) for sm_90 as a Markdown table to that file.

#![cfg(feature = "cuda")]

use suptickets::backend::cuda;
use suptickets::backend::registry;

const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

/// True when NVRTC can be loaded; otherwise skips (or fails under CI).
fn nvrtc_or_skip() -> bool {
    if cuda::nvrtc_available() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty());
    assert!(
        !ci,
        "CI is set but NVRTC cannot be loaded, so no kernel was compiled: {}",
        cuda::loader::NVRTC_HINT
    );
    println!("skipped: NVRTC not found ({})", cuda::loader::NVRTC_HINT);
    false
}

/// One kernel's line of the ptxas report.
#[derive(Debug, Default, Clone)]
struct KernelStats {
    name: String,
    registers: u32,
    smem: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
}

/// The number just before `unit` in `line` (e.g. "14" in "Used 14 registers").
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let at = line.find(unit)?;
    line[..at].split_whitespace().last()?.parse().ok()
}

/// Parses NVRTC's ptxas log into per-kernel statistics.
fn parse_ptxas(log: &str) -> Vec<KernelStats> {
    let mut out: Vec<KernelStats> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Function properties for ").nth(1) {
            out.push(KernelStats {
                name: rest.trim().to_string(),
                ..Default::default()
            });
        } else if let Some(k) = out.last_mut() {
            if line.contains("stack frame") {
                k.stack = number_before(line, "bytes stack frame").unwrap_or(0);
                k.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                k.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("registers") {
                k.registers = number_before(line, "registers").unwrap_or(0);
                k.smem = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

#[test]
fn every_family_compiles_for_sm80_and_sm90_with_its_registry_entries() {
    if !nvrtc_or_skip() {
        return;
    }
    let mut report = String::from(
        "| family | kernel | registers | smem (bytes) | stack (bytes) | spill stores | spill loads |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for family in registry::families() {
        let mut expected: Vec<String> = registry::kernels_of(family)
            .iter()
            .map(|s| s.to_string())
            .collect();
        expected.sort();
        for arch in ARCHS {
            let compiled = cuda::ptxas_report(family, arch)
                .unwrap_or_else(|e| panic!("kernels/{family}.cu for {arch}: {e}"));
            let mut entries = cuda::ptx_entries(&compiled.ptx);
            entries.sort();
            assert_eq!(
                entries, expected,
                "kernels/{family}.cu ({arch}): PTX entries differ from the registry's {family} kernels"
            );
            let stats = parse_ptxas(&compiled.log);
            assert_eq!(
                stats.len(),
                expected.len(),
                "kernels/{family}.cu ({arch}): ptxas reported {} kernels, expected {}:\n{}",
                stats.len(),
                expected.len(),
                compiled.log
            );
            for k in &stats {
                println!(
                    "{arch} {family}::{}: {} registers, {} B smem, {} B stack, spills {} B stored / {} B loaded",
                    k.name, k.registers, k.smem, k.stack, k.spill_stores, k.spill_loads
                );
                assert_eq!(
                    (k.spill_stores, k.spill_loads),
                    (0, 0),
                    "{arch} {family}::{} spills registers",
                    k.name
                );
                if arch == "sm_90" {
                    report.push_str(&format!(
                        "| {family} | `{}` | {} | {} | {} | {} | {} |\n",
                        k.name, k.registers, k.smem, k.stack, k.spill_stores, k.spill_loads
                    ));
                }
            }
            // The virtual-architecture PTX the backend loads at run time compiles too.
            let ptx = cuda::compile_family(family, &arch.replace("sm_", "compute_"))
                .unwrap_or_else(|e| panic!("kernels/{family}.cu for compute of {arch}: {e}"));
            let mut virt = cuda::ptx_entries(&ptx);
            virt.sort();
            assert_eq!(
                virt, expected,
                "kernels/{family}.cu (compute PTX of {arch})"
            );
        }
    }
    if let Ok(path) = std::env::var("SUPTICKETS_KERNEL_REPORT") {
        std::fs::write(&path, &report).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        println!("wrote the sm_90 ptxas report to {path}");
    }
}

#[test]
fn kernel_sources_include_no_system_headers() {
    let mut sources = vec![("common.cuh", cuda::loader::COMMON_SOURCE)];
    sources.extend(
        cuda::loader::SHARED_HEADERS
            .iter()
            .map(|(f, s, _)| (*f, *s)),
    );
    sources.extend(cuda::loader::FAMILY_SOURCES.iter().copied());
    for (name, src) in sources {
        for (i, line) in src.lines().enumerate() {
            assert!(
                !line.trim_start().starts_with("#include"),
                "kernels/{name}:{}: kernels must not include headers (NVRTC has no system \
                 include path here): {line}",
                i + 1
            );
        }
    }
}

#[test]
fn every_registry_family_has_a_source() {
    for family in registry::families() {
        assert!(
            cuda::loader::family_source(family).is_some(),
            "no kernels/{family}.cu embedded in src/backend/cuda/loader.rs"
        );
    }
    assert_eq!(
        cuda::loader::FAMILY_SOURCES.len(),
        registry::families().len(),
        "loader.rs embeds a family the registry does not list"
    );
}

#[test]
fn a_compile_error_is_reported_with_the_nvrtc_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let err = cuda::compile_family("no_such_family", "sm_90").unwrap_err();
    assert!(err.to_string().contains("no_such_family"), "{err}");
    let err = cuda::compile_family("conv", "sm_").unwrap_err();
    assert!(err.to_string().contains("architecture"), "{err}");
}

/// Number of `.param` entries of each `.entry` in a PTX text.
fn ptx_param_counts(ptx: &str) -> std::collections::HashMap<String, usize> {
    let mut out = std::collections::HashMap::new();
    for name in cuda::ptx_entries(ptx) {
        let at = ptx
            .find(&format!(".entry {name}("))
            .expect("entry found by ptx_entries");
        let params = &ptx[at..at + ptx[at..].find(')').expect("entry parameter list ends")];
        out.insert(name, params.matches(".param").count());
    }
    out
}

/// Splits `text` at top-level commas (ignoring commas inside brackets).
fn top_level_items(text: &str) -> usize {
    let (mut depth, mut items, mut any) = (0i32, 0usize, false);
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                items += 1;
                any = false;
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            any = true;
        }
    }
    items + any as usize
}

/// The text between `open` (just past an opening bracket) and its matching closing bracket.
fn bracketed(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

#[test]
fn launch_wrappers_push_one_argument_per_kernel_parameter() {
    if !nvrtc_or_skip() {
        return;
    }
    let mut params = std::collections::HashMap::new();
    for family in registry::families() {
        params.extend(ptx_param_counts(
            &cuda::compile_family(family, "compute_90").expect("compiles"),
        ));
    }
    // (kernel, number of arguments the Rust wrapper pushes), from the wrapper sources.
    let mut pushed: Vec<(String, usize)> = Vec::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backend/cuda");
    // A family's wrappers live in `<family>.rs` and its parts `<family>_<part>.rs`.
    let files: Vec<(&str, std::path::PathBuf)> = registry::families()
        .into_iter()
        .flat_map(|family| {
            let mut paths: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                    stem == family || stem.starts_with(&format!("{family}_"))
                })
                .collect();
            paths.sort();
            paths.into_iter().map(move |p| (family, p))
        })
        .collect();
    for (family, path) in files {
        let src = std::fs::read_to_string(&path).unwrap();
        // Direct launches: `function("name")` (or `function(name)` for add/mul) ... `.launch(`.
        for (at, _) in src.match_indices(".loader.function(") {
            let rest = &src[at + ".loader.function(".len()..];
            let arg = bracketed(rest).trim();
            let body = &rest[..rest.find(".launch(").expect("a launch follows the lookup")];
            let n = body.matches(".arg(").count();
            let names: Vec<String> = match arg.strip_prefix('"') {
                Some(lit) => vec![lit.trim_end_matches('"').to_string()],
                // launch_binary: the name is checked to be add_f32 or mul_f32.
                None if family == "elementwise" => vec!["add_f32".into(), "mul_f32".into()],
                // launch_pool: counted at its call sites below.
                None if family == "pool" => vec![],
                None => panic!("{}: kernel name {arg} is not a literal", path.display()),
            };
            pushed.extend(names.into_iter().map(|k| (k, n)));
        }
        // Pool launches: launch_pool("name", &[inputs], p, &mut [outputs], total).
        for (at, _) in src.match_indices("self.launch_pool(\"") {
            let call = bracketed(&src[at + "self.launch_pool(".len()..]);
            let name = call[1..].split('"').next().unwrap().to_string();
            let inputs = bracketed(&call[call.find("&[").unwrap() + 2..]);
            let outputs = bracketed(&call[call.find("&mut [").unwrap() + 6..]);
            pushed.push((name, top_level_items(inputs) + 1 + top_level_items(outputs)));
        }
    }
    for k in registry::KERNELS {
        let wrappers: Vec<usize> = pushed
            .iter()
            .filter(|(n, _)| n == k.name)
            .map(|(_, c)| *c)
            .collect();
        assert!(
            !wrappers.is_empty(),
            "no launch of {} found in src/backend/cuda/{}*.rs",
            k.name,
            k.family
        );
        for c in wrappers {
            assert_eq!(
                c, params[k.name],
                "{}: the wrapper pushes {c} arguments, the kernel takes {}",
                k.name, params[k.name]
            );
        }
    }
}
