//! What people see: live progress on stderr ([`console`]), the one JSON document of
//! `--json` ([`json`]), and the end of `--help`, completions and the man page ([`help`]).

pub mod console;
pub mod help;
pub mod json;

pub use console::Console;
