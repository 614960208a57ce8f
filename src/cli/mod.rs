//! The subcommands of the `suptickets` program that do not train (`bench`, `flops`, `info`); `say!`
//! (defined in main.rs) prints.

pub mod bench;
pub mod flops;
pub mod info;
