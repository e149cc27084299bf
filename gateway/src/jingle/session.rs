//! One Jingle session, answered or placed by the gateway: the negotiated media, where the
//! offer/answer stands, its timers.

use jid::{FullJid, Jid};

use crate::protocol::ice_udp::Candidate;
use crate::protocol::jingle::{Creator, Sid};

use super::negotiate::Negotiated;
use super::timers::Timers;
use crate::types::CallId;

/// Where the answer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// `session-initiate` acknowledged; waiting for the media leg's local transport.
    AwaitingTransport,
    /// `session-accept` sent with this IQ id; waiting for the caller's acknowledgement.
    Accepting {
        /// Id of the session-accept IQ.
        iq_id: String,
    },
    /// We placed the call: `session-initiate` sent, waiting for the callee's `session-accept`.
    Ringing,
    /// The caller acknowledged the `session-accept`, or the callee sent one.
    Active,
}

/// Which side of the session the gateway is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A caller initiated it; the gateway answers.
    Answering {
        /// A digest of the caller's `session-initiate`, to recognise an exact duplicate.
        initiate: u64,
    },
    /// The gateway placed the call: it initiated the session.
    Calling,
}

/// A session the gateway answers or places.
#[derive(Debug, Clone)]
pub struct Session {
    /// The call this session belongs to.
    pub call_id: CallId,
    /// Which side the gateway is.
    pub role: Role,
    /// The other party's full JID: every IQ of the session comes from and goes to it.
    pub peer: FullJid,
    /// Our JID in the session: the JID that was called, exactly as addressed, or the virtual
    /// JID's device JID when we call. Every IQ we send comes from it.
    pub local: Jid,
    /// Local part of the virtual JID (the endpoint name).
    pub virtual_jid: String,
    /// Session id.
    pub sid: Sid,
    /// Whether the call was rung with XEP-0353 first (then `<finish/>` ends it too).
    pub via_jmi: bool,
    /// Name of the audio content.
    pub content_name: String,
    /// Creator of the audio content.
    pub creator: Creator,
    /// The negotiated media: from the offer, or (when we call) from the answer once it came.
    pub negotiated: Option<Negotiated>,
    /// The peer's current ICE username fragment (a new one means an ICE restart).
    pub remote_ufrag: String,
    /// Where the answer stands.
    pub state: SessionState,
    /// Local candidates gathered before the answer was sent, to include in it.
    pub early_candidates: Vec<Candidate>,
    /// Ring, answer and duration timers.
    pub timers: Timers,
    /// ICE restarts the peer made, and when the last one was.
    pub restarts: u32,
    /// When the peer last restarted ICE.
    pub last_restart: Option<std::time::Instant>,
}

impl Session {
    /// Whether the gateway placed the call.
    pub fn is_calling(&self) -> bool {
        self.role == Role::Calling
    }

    /// Whether our `session-accept` or `session-initiate` has been sent, so local candidates go
    /// out as transport-info.
    pub fn answer_sent(&self) -> bool {
        !matches!(self.state, SessionState::AwaitingTransport)
    }
}
