//! Small helpers every crate of the suite would otherwise copy: random ids and strings
//! ([`random`]), the wall clock in milliseconds ([`now_ms`]), error messages on one line
//! ([`one_line`]) and, with the `roots` feature, the system's CA roots ([`roots`]).
//!
//! A leaf: it depends on no crate of the workspace, and on little else.

mod clock;
pub mod random;
mod text;

#[cfg(feature = "roots")]
pub mod roots;

pub use clock::now_ms;
pub use random::RandomError;
pub use text::one_line;
