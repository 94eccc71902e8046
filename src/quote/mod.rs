//! One quoting module per output context. A recipe value reaches generated text only
//! through one of these, each of which keeps the value intact and unable to change the
//! structure around it.
//!
//! - [`dockerfile`]: Dockerfile lines (JSON-array form where the instruction has one, the
//!   double-quoted `KEY="value"` form for ENV and LABEL);
//! - [`shell`]: POSIX shell words;
//! - [`requirements`]: pip requirements lines.

pub mod dockerfile;
pub mod requirements;
pub mod shell;
