//! The Jingle signalling core (sans-IO): offer/answer, sessions, XEP-0353, timers, and why calls
//! end. It takes typed payloads and a caller-supplied `now`, and returns typed outputs.

pub mod end_reason;
pub mod negotiate;
pub mod session;
pub mod signalling;
pub mod timers;

pub use end_reason::EndReason;
pub use signalling::{
    CallLimits, CallStart, Callee, MediaEvent, Output, Refusal, Signalling, SignallingConfig,
    MAX_TRACKED_CALLERS,
};

use std::fmt;

/// Identifies one call for its whole life, in logs and between tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
