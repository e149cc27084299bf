//! Why a media leg failed, in media terms; [`MediaFailure::end_reason`] is the one place that
//! becomes the reason the call ends (and the Jingle `<reason/>` the peer reads).

use crate::media::port_range::NoMediaPort;
use crate::types::EndReason;

/// Why a media leg could not start or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum MediaFailure {
    /// No port of `media.port_range` (or no file descriptor) for the call's socket.
    #[error(transparent)]
    NoMediaPort(#[from] NoMediaPort),
    /// The ICE agent could not be made, could not gather, or refused a restart.
    #[error("ICE agent: {0}")]
    Agent(String),
    /// An ICE restart could not be made.
    #[error("ICE restart: {0}")]
    Restart(String),
    /// The ICE agent stopped reporting (its task ended).
    #[error("the ICE agent stopped")]
    AgentGone,
    /// No candidate pair worked, in time or at all.
    #[error("ICE found no working candidate pair{}", detail(.0))]
    NoPair(Option<String>),
    /// The pair that worked stopped working (ICE failed after connecting, or its connection
    /// closed).
    #[error("the connection was lost")]
    ConnectionLost,
    /// The peer stopped answering our consent checks (RFC 7675).
    #[error("the peer stopped answering consent checks")]
    ConsentLost,
    /// The socket failed during the DTLS handshake.
    #[error("socket error during the DTLS handshake")]
    Socket,
    /// The DTLS handshake failed (a certificate not matching the signalled fingerprint, too).
    #[error("DTLS handshake: {0}")]
    Handshake(String),
    /// The DTLS handshake did not finish in time.
    #[error("the DTLS handshake did not finish in time")]
    HandshakeTimeout,
    /// There was no fingerprint to check the peer's certificate against.
    #[error("no remote fingerprint")]
    NoFingerprint,
    /// SRTP could not start from the handshake's keys.
    #[error("SRTP: {0}")]
    Srtp(String),
}

fn detail(error: &Option<String>) -> String {
    error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

impl MediaFailure {
    /// Why the call ends because of this failure.
    pub fn end_reason(&self) -> EndReason {
        match self {
            Self::NoMediaPort(_) => EndReason::NoMediaPort,
            Self::Agent(_) | Self::AgentGone | Self::Socket => EndReason::MediaError,
            Self::NoPair(_) | Self::Restart(_) => EndReason::IceFailed,
            Self::ConnectionLost | Self::ConsentLost => EndReason::ConsentLost,
            Self::Handshake(_) | Self::HandshakeTimeout | Self::NoFingerprint | Self::Srtp(_) => {
                EndReason::SecurityFailure
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_ends_the_call_with_the_reason_the_peer_should_read() {
        let cases = [
            (MediaFailure::Agent("x".into()), EndReason::MediaError),
            (MediaFailure::AgentGone, EndReason::MediaError),
            (MediaFailure::Socket, EndReason::MediaError),
            (MediaFailure::NoPair(None), EndReason::IceFailed),
            (MediaFailure::Restart("x".into()), EndReason::IceFailed),
            (MediaFailure::ConnectionLost, EndReason::ConsentLost),
            (MediaFailure::ConsentLost, EndReason::ConsentLost),
            (
                MediaFailure::Handshake("bad".into()),
                EndReason::SecurityFailure,
            ),
            (MediaFailure::HandshakeTimeout, EndReason::SecurityFailure),
            (MediaFailure::NoFingerprint, EndReason::SecurityFailure),
            (
                MediaFailure::Srtp("keys".into()),
                EndReason::SecurityFailure,
            ),
        ];
        for (failure, reason) in cases {
            assert_eq!(failure.end_reason(), reason, "{failure}");
        }
        assert_eq!(
            MediaFailure::NoPair(Some("timeout".into())).to_string(),
            "ICE found no working candidate pair: timeout"
        );
    }
}
