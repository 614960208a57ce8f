//! Parses PTX files and lists their kernels, instruction counts and anything the virtual GPU
//! does not implement: `cargo run --example ptxinfo -- file.ptx...`.

fn main() {
    let mut bad = 0;
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        match vgpu::ptx::parse_module(&text) {
            Ok(m) => {
                for k in &m.kernels {
                    println!(
                        "{path}: {} ({} instructions, {} registers, {} B shared, {} B params)",
                        k.name,
                        k.code.len(),
                        k.nregs,
                        k.shared_static,
                        k.param_bytes
                    );
                    for u in &k.unsupported {
                        println!("  unsupported: {u}");
                        bad += 1;
                    }
                }
            }
            Err(e) => {
                println!("{path}: parse error: {e}");
                bad += 1;
            }
        }
    }
    std::process::exit(i32::from(bad > 0));
}
