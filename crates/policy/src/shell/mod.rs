//! The shell language: syntax tree and parser.

mod ast;
mod parser;

pub use ast::*;
pub use parser::{MAX_DEPTH, MAX_INPUT, ParseError, flatten, parse};
