//! The Jingle signalling core (sans-IO): offer/answer, sessions, XEP-0353, timers, and why calls
//! end. It takes typed payloads and a caller-supplied `now`, and returns typed outputs.

pub mod negotiate;
pub mod session;
pub mod signalling;
pub mod timers;

pub use signalling::{
    CallLimits, CallStart, MediaEvent, Output, Refusal, Signalling, SignallingConfig,
    VirtualJidPolicy, MAX_TRACKED_CALLERS,
};
