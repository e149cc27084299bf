//! Terms every layer shares, below all of them: which codec a call uses, the DTLS role and the
//! peer's fingerprint agreed in signalling, a call's id, and why it ended. Signalling, media,
//! prompts, endpoints and mailboxes all speak these; none of them owns them.

mod codec;
mod dtls;
mod end_reason;

pub use codec::Codec;
pub use dtls::{DtlsRole, RemoteFingerprint, FINGERPRINT_HASHES};
pub use end_reason::EndReason;

use std::fmt;

/// Identifies one call for its whole life, in logs and between tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The RTCP CNAME of the stream with `ssrc` (in the answer and in RTCP SDES).
pub fn cname(ssrc: u32) -> String {
    format!("gw-{ssrc:08x}")
}
