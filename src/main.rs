//! The `suptickets` command-line program.

fn main() {
    println!("suptickets {}", env!("CARGO_PKG_VERSION"));
}
