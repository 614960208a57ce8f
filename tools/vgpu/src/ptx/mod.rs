//! PTX front end: tokeniser, parser and decoder into [`inst::Module`].

pub mod decode;
pub mod inst;
pub mod lex;
pub mod parse;

pub use parse::parse_module;
