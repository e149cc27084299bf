//! Why a call ended: one enum, mapped to the Jingle `<reason/>`, to logs and to metrics.

use std::fmt;

use crate::protocol::jingle::{Reason, ReasonElement};

/// Why a call ended (or was refused after its `session-initiate` was acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The caller hung up with `session-terminate` (its reason kept) or `<finish/>`.
    PeerHungUp(Reason),
    /// The caller withdrew its XEP-0353 proposal.
    PeerRetracted,
    /// The person we called declined (XEP-0353 `<reject/>`, its reason kept).
    PeerRejected(Reason),
    /// We gave up a call we placed: another target answered, or the caller hung up.
    Cancelled,
    /// The config does not let the gateway call this target now (not allowed, or rate limited).
    NotAllowed,
    /// The virtual JID's `callers` list does not name the caller.
    CallerNotAllowed,
    /// The caller, or its domain, has or starts too many calls.
    TooManyCalls,
    /// The gateway and the peer called each other at once, and this call lost the tie-break.
    TieBreak,
    /// The caller went offline or its client stopped answering.
    PeerGone,
    /// The endpoint finished the call (menu said goodbye, message recorded).
    EndpointHungUp,
    /// The caller removed the call's only content.
    ContentRemoved,
    /// The virtual JID already has as many calls as it may.
    Busy,
    /// The virtual JID's endpoint is not available in this build yet.
    EndpointUnavailable,
    /// The offer had no codec the gateway speaks.
    UnsupportedApplications,
    /// The offer had no ICE-UDP transport.
    UnsupportedTransports,
    /// The offer's ICE username fragment or password does not follow RFC 8839.
    BadIceCredentials,
    /// The offer had no usable DTLS fingerprint.
    NoFingerprint,
    /// The offer lacked `<rtcp-mux/>`, which the gateway needs.
    NoRtcpMux,
    /// The peer's DTLS certificate did not match its fingerprint, or DTLS failed.
    SecurityFailure,
    /// A JMI call did not send its session-initiate in time.
    RingTimeout,
    /// The caller did not acknowledge the session-accept in time.
    AnswerTimeout,
    /// The call reached `calls.max_duration`.
    MaxDuration,
    /// ICE never connected.
    IceFailed,
    /// Nothing (media or ICE) came from the peer for `media.consent_timeout`.
    ConsentLost,
    /// Media could not be processed.
    MediaError,
    /// No media port (or file descriptor) was free for the call.
    NoMediaPort,
    /// The gateway is shutting down.
    Shutdown,
    /// An administrator hung the call up (the `hang-up` admin command).
    HungUpByAdmin,
    /// The caller's client refused a request of the session (an IQ error).
    PeerError,
    /// The mailbox holds as many messages as it may.
    MailboxFull,
    /// The message could not be stored (a full disk); what was recorded is kept.
    StorageFailed,
    /// The sound device could not be opened, or stopped during the call.
    SoundDeviceFailed,
    /// A fault inside the gateway.
    Internal,
}

impl EndReason {
    /// The Jingle reason sent in `session-terminate`.
    pub fn jingle_reason(&self) -> Reason {
        match self {
            Self::PeerHungUp(reason) => *reason,
            Self::PeerRetracted | Self::Cancelled => Reason::Cancel,
            Self::PeerRejected(reason) => *reason,
            Self::NotAllowed | Self::CallerNotAllowed => Reason::Decline,
            Self::TooManyCalls => Reason::Busy,
            Self::TieBreak => Reason::Expired,
            Self::PeerGone => Reason::Gone,
            Self::EndpointHungUp | Self::ContentRemoved => Reason::Success,
            Self::Busy => Reason::Busy,
            Self::EndpointUnavailable => Reason::UnsupportedApplications,
            Self::UnsupportedApplications => Reason::UnsupportedApplications,
            Self::UnsupportedTransports => Reason::UnsupportedTransports,
            Self::NoFingerprint | Self::SecurityFailure => Reason::SecurityError,
            Self::NoRtcpMux | Self::BadIceCredentials => Reason::IncompatibleParameters,
            Self::RingTimeout | Self::AnswerTimeout => Reason::Timeout,
            Self::MaxDuration => Reason::Expired,
            Self::IceFailed => Reason::FailedTransport,
            Self::ConsentLost => Reason::ConnectivityError,
            Self::MediaError => Reason::MediaError,
            Self::NoMediaPort => Reason::Busy,
            Self::Shutdown => Reason::Gone,
            Self::HungUpByAdmin => Reason::Success,
            Self::PeerError | Self::MailboxFull | Self::StorageFailed | Self::SoundDeviceFailed => {
                Reason::FailedApplication
            }
            Self::Internal => Reason::GeneralError,
        }
    }

    /// A short text for the `<reason/>`, where the condition alone would puzzle a user.
    pub fn text(&self) -> Option<&'static str> {
        match self {
            Self::EndpointUnavailable => Some("this service is not available yet"),
            Self::CallerNotAllowed => Some("you may not call this address"),
            Self::TooManyCalls => Some("too many calls; try again later"),
            Self::TieBreak => Some("Tie-Break"),
            Self::UnsupportedApplications => Some("no common audio codec (Opus, PCMU or PCMA)"),
            Self::UnsupportedTransports => Some("ICE-UDP is required"),
            Self::NoFingerprint => Some("DTLS-SRTP is required"),
            Self::NoRtcpMux => Some("rtcp-mux is required"),
            Self::BadIceCredentials => Some("ICE ufrag and pwd must follow RFC 8839"),
            Self::MaxDuration => Some("maximum call duration reached"),
            Self::NoMediaPort => Some("no media port free; try again later"),
            Self::Shutdown => Some("the gateway is shutting down"),
            Self::HungUpByAdmin => Some("the call was ended by the gateway's administrator"),
            Self::MailboxFull => Some("the mailbox is full"),
            Self::SoundDeviceFailed => Some("the sound device is not available"),
            Self::StorageFailed => {
                Some("voicemail storage failed; the message was kept up to here")
            }
            _ => None,
        }
    }

    /// The `<reason/>` element.
    pub fn to_reason_element(&self) -> ReasonElement {
        ReasonElement {
            reason: self.jingle_reason(),
            text: self.text().map(str::to_string),
        }
    }

    /// A stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PeerHungUp(_) => "peer_hung_up",
            Self::PeerRetracted => "peer_retracted",
            Self::PeerRejected(_) => "peer_rejected",
            Self::Cancelled => "cancelled",
            Self::NotAllowed => "not_allowed",
            Self::CallerNotAllowed => "caller_not_allowed",
            Self::TooManyCalls => "too_many_calls",
            Self::TieBreak => "tie_break",
            Self::PeerGone => "peer_gone",
            Self::EndpointHungUp => "endpoint_hung_up",
            Self::ContentRemoved => "content_removed",
            Self::Busy => "busy",
            Self::EndpointUnavailable => "endpoint_unavailable",
            Self::UnsupportedApplications => "unsupported_applications",
            Self::UnsupportedTransports => "unsupported_transports",
            Self::NoFingerprint => "no_fingerprint",
            Self::NoRtcpMux => "no_rtcp_mux",
            Self::BadIceCredentials => "bad_ice_credentials",
            Self::SecurityFailure => "security_failure",
            Self::RingTimeout => "ring_timeout",
            Self::AnswerTimeout => "answer_timeout",
            Self::MaxDuration => "max_duration",
            Self::IceFailed => "ice_failed",
            Self::ConsentLost => "consent_lost",
            Self::MediaError => "media_error",
            Self::NoMediaPort => "no_media_port",
            Self::Shutdown => "shutdown",
            Self::HungUpByAdmin => "hung_up_by_admin",
            Self::PeerError => "peer_error",
            Self::MailboxFull => "mailbox_full",
            Self::StorageFailed => "storage_failed",
            Self::SoundDeviceFailed => "sound_device_failed",
            Self::Internal => "internal",
        }
    }

    /// Whether the peer ended the call itself (or, after a tie-break, never had it), so no
    /// `session-terminate` is owed to it.
    pub fn ended_by_peer(&self) -> bool {
        matches!(
            self,
            Self::PeerHungUp(_)
                | Self::PeerRetracted
                | Self::PeerRejected(_)
                | Self::PeerGone
                | Self::TieBreak
        )
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerHungUp(reason) => write!(f, "peer_hung_up ({reason})"),
            Self::PeerRejected(reason) => write!(f, "peer_rejected ({reason})"),
            other => f.write_str(other.as_str()),
        }
    }
}
