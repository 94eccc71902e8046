//! An error and its causes as one line, `outer: cause: cause`, as `{:#}` of `anyhow` prints
//! it at the top: for the places that show an error before it gets there (a note, a
//! warning, a row of a report), so a cause kept as a typed source is never left out.

use std::error::Error;
use std::fmt;

/// Displays `0` and each of its sources, joined by `: `.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// The chain of `e` as a string.
pub fn text(e: &(dyn Error + 'static)) -> String {
    Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the lock")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_follows_its_error() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(text(&e), "reading the lock: disk full");
        assert_eq!(
            format!(
                "{:#}",
                anyhow::Error::new(Outer(std::io::Error::other("disk full")))
            ),
            text(&e),
            "the same as anyhow's chain at the top"
        );
    }
}
