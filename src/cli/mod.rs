//! The subcommands of the `suptickets` program that do not train (`flops`, `info`); `say!`
//! (defined in main.rs) prints.

pub mod flops;
pub mod info;
