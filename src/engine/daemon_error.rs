//! bollard's error as a person reads it, with bollard's error kept (typed) behind it.

use std::error::Error;
use std::fmt;

/// An error of one engine call. Its text is what the daemon said and the HTTP status
/// (bollard's own text repeats the status first); a transport error (hyper, ssh, a socket)
/// says its causes as the error chain, so `{:#}` at the top prints each part once.
/// Boxed: bollard's error is large, and every engine call returns this on its error path.
#[derive(Debug)]
pub struct DaemonError(Box<bollard::errors::Error>);

impl DaemonError {
    /// The error as bollard gave it, for decisions by type (a status code, an I/O kind).
    pub fn bollard(&self) -> &bollard::errors::Error {
        &self.0
    }

    /// The HTTP status the daemon answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match &*self.0 {
            bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
                Some(*status_code)
            }
            _ => None,
        }
    }

    /// The daemon's own words, without the status: what a registry classification reads.
    pub fn message(&self) -> Option<&str> {
        use bollard::errors::Error as E;
        match &*self.0 {
            E::DockerResponseServerError { message, .. } => Some(message),
            E::DockerStreamError { error } => Some(error),
            _ => None,
        }
    }

    /// Whether some cause is an I/O error of `kind` (a socket the user may not open).
    pub fn io_kind_is(&self, kind: std::io::ErrorKind) -> bool {
        // bollard's IOError is transparent: its source is the I/O error's source, not it.
        if let bollard::errors::Error::IOError { err } = &*self.0 {
            if err.kind() == kind {
                return true;
            }
        }
        let mut cause: Option<&(dyn Error + 'static)> = Some(&*self.0);
        while let Some(c) = cause {
            if c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == kind)
            {
                return true;
            }
            cause = c.source();
        }
        false
    }
}

impl From<bollard::errors::Error> for DaemonError {
    fn from(e: bollard::errors::Error) -> Self {
        DaemonError(Box::new(e))
    }
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&head(&self.0))
    }
}

impl Error for DaemonError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        first_unsaid_cause(&self.0)
    }
}

/// The error's own text: the daemon's message and status, or bollard's text.
fn head(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        E::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// The first cause whose text [`head`] does not already hold: bollard's hyper error says
/// its first cause in its own text ("Error in the hyper legacy client: client error
/// (Connect)"), and the chain then goes on from the cause after it.
fn first_unsaid_cause(e: &bollard::errors::Error) -> Option<&(dyn Error + 'static)> {
    if matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { .. }
            | bollard::errors::Error::DockerStreamError { .. }
    ) {
        return None;
    }
    let shown = head(e);
    let mut cause = e.source();
    while let Some(c) = cause {
        if !shown.contains(&c.to_string()) {
            return Some(c);
        }
        cause = c.source();
    }
    None
}

/// The whole of a bollard error as one line, each part once: for the places that keep the
/// engine's text itself (a registry failure is classed from it).
pub(crate) fn describe(e: &bollard::errors::Error) -> String {
    let mut text = head(e);
    if let Some(c) = first_unsaid_cause(e) {
        text.push_str(": ");
        text.push_str(&crate::error_chain::text(c));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(e: &(dyn Error + 'static)) -> String {
        crate::error_chain::text(e)
    }

    #[test]
    fn a_server_error_says_the_daemon_s_message_and_status_once() {
        let e = DaemonError::from(bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such image: x:y".into(),
        });
        assert_eq!(chain(&e), "No such image: x:y (HTTP 404)");
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.message(), Some("No such image: x:y"));
    }

    #[test]
    fn a_transport_error_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied here");
        let e = DaemonError::from(bollard::errors::Error::IOError { err: io });
        // bollard's IOError is transparent: its text is the I/O error's, said once.
        assert_eq!(chain(&e), "denied here");
        assert!(e.io_kind_is(std::io::ErrorKind::PermissionDenied));
        assert!(!e.io_kind_is(std::io::ErrorKind::NotFound));
        assert_eq!(e.status(), None);
    }
}
