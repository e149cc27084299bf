//! Endpoints: what answers a call. One lifecycle for all (after Janus' plugins): the call is
//! connected, audio comes in every packet time (encoded, and decoded when the endpoint asks),
//! key presses come in, audio goes out every packet time, events go out (hang up, send DTMF).
//! Endpoints never see packets, sockets or signalling, so a new one is one file.

pub mod bridge;
mod doctor;
mod echo;
pub mod ivr;
mod kinds;
pub mod player;
mod sound;
pub mod voicemail;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use echo::Echo;
pub use kinds::{settings_of, Kind, Kinds, NewCall, KINDS};

use crate::config::{DtmfSourcesConfig, EndpointSettings};
use crate::jingle::negotiate::Negotiated;
use crate::mailbox::Mailboxes;
use crate::media::codec::AudioFrame;
use crate::media::dtmf::Digit;
use crate::prompt::PromptLibrary;
use crate::types::Codec;
use crate::types::EndReason;

/// Received audio, in order, one piece per call.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A packet's worth of audio.
    Audio {
        /// The encoded payload, in the call's codec.
        payload: &'a Bytes,
        /// Its RTP timestamp (in the codec's clock rate).
        timestamp: u32,
        /// Its duration in samples at 48 kHz.
        duration: usize,
        /// The decoded samples (48 kHz mono), when the endpoint wants them.
        pcm: Option<&'a [i16]>,
    },
    /// Audio lost in transit: its duration, and concealment when the endpoint wants samples.
    Lost {
        /// Duration in samples at 48 kHz.
        duration: usize,
        /// Concealment samples, when the endpoint wants them.
        pcm: Option<&'a [i16]>,
    },
}

/// What an endpoint sends for one packet time.
#[derive(Debug)]
pub enum Outgoing<'a> {
    /// Nothing (the time passes as a gap).
    Silence,
    /// An encoded payload in the call's codec, sent as it is.
    Encoded(Bytes),
    /// 20 ms of 48 kHz mono samples, encoded by the call.
    Pcm(&'a AudioFrame),
}

/// An endpoint's request to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// End the call normally.
    HangUp,
    /// End the call for this reason (after any prompt saying why).
    Fail(EndReason),
    /// Send a key press to the caller as RFC 4733 `telephone-event`.
    SendDtmf(Digit),
    /// Hand the call to the endpoint of another virtual JID (its local part).
    Transfer(String),
    /// Send `body` as a chat message from the virtual JID to `to`.
    SendMessage {
        /// Recipient.
        to: jid::Jid,
        /// Text.
        body: String,
    },
    /// Ring people for the caller; whoever answers is bridged with the call (replacing this
    /// endpoint), and if nobody does, [`Endpoint::on_connect_failed`] is called.
    Connect(DialPlan),
}

/// Whom to ring for a caller, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    /// JIDs to ring: a bare JID rings every device of the user, a full JID one device.
    pub targets: Vec<jid::Jid>,
    /// Ring every target at once (`true`), or one after the other (hunt).
    pub ring_all: bool,
    /// How long each target rings.
    pub ring_timeout: Duration,
}

/// Runs `work` (disk: reading, decoding, writing a mailbox's files) off the call task, on
/// the runtime's blocking pool (or a thread of its own outside a runtime); its result comes
/// on the returned receiver, which an endpoint polls at its next packet time.
pub fn off_the_call<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::sync::mpsc::Receiver<T> {
    let (result, receiver) = std::sync::mpsc::channel();
    let job = move || {
        let _ = result.send(work());
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(job)),
        Err(_) => drop(std::thread::spawn(job)),
    }
    receiver
}

/// The JIDs among `entries` (config values, validated at load: none is dropped in practice).
pub fn jids(entries: &[String]) -> Vec<jid::Jid> {
    entries
        .iter()
        .filter_map(|entry| jid::Jid::new(entry).ok())
        .collect()
}

/// Facts about the call an endpoint may use.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The caller's JID.
    pub peer: jid::FullJid,
    /// The codec of both directions.
    pub codec: Codec,
}

/// Makes the endpoint of a virtual JID for a call (at its start, or when a call is handed over).
pub struct EndpointFactory {
    /// Each virtual JID's kind, with its settings.
    kinds: HashMap<String, (&'static dyn Kind, Arc<dyn EndpointSettings>)>,
    prompts: Arc<PromptLibrary>,
    voicemail: Arc<Mailboxes>,
    /// Who may reach each virtual JID, also by a transfer from another one.
    callers: HashMap<String, crate::config::CallerList>,
    local_domains: Vec<String>,
}

impl EndpointFactory {
    /// The endpoints of `config`'s virtual JIDs, playing prompts from `prompts`; mailboxes
    /// store messages in `voicemail`.
    pub fn new(
        config: &crate::config::Config,
        prompts: Arc<PromptLibrary>,
        voicemail: Arc<Mailboxes>,
    ) -> Self {
        let names = config.endpoints.keys();
        Self {
            kinds: config
                .endpoints
                .iter()
                .filter_map(|(name, endpoint)| {
                    let kind = KINDS.get(endpoint.kind)?;
                    Some((name.clone(), (kind, endpoint.settings.clone())))
                })
                .collect(),
            prompts,
            voicemail,
            callers: names
                .map(|name| (name.clone(), config.callers_of(name)))
                .collect(),
            local_domains: config.local_domains(),
        }
    }

    /// A new endpoint for a call from `peer` to `virtual_jid` in `codec`, or why there is none:
    /// `virtual_jid` does not exist or is not available in this build, its `callers` list does
    /// not name `peer` (a transfer from a JID open to more callers than this one), or its sound
    /// device is in use.
    pub fn create(
        &self,
        virtual_jid: &str,
        peer: &jid::FullJid,
        codec: Codec,
    ) -> Result<Box<dyn Endpoint>, EndReason> {
        let allowed = self
            .callers
            .get(virtual_jid)
            .is_some_and(|callers| callers.allows(peer, &self.local_domains));
        if !allowed {
            return Err(EndReason::CallerNotAllowed);
        }
        let Some((kind, settings)) = self.kinds.get(virtual_jid) else {
            return Err(EndReason::EndpointUnavailable);
        };
        let call = NewCall {
            virtual_jid,
            peer,
            codec,
            prompts: &self.prompts,
            mailboxes: &self.voicemail,
        };
        kind.create(settings, &call)
    }
}

/// What answers a call.
pub trait Endpoint: Send {
    /// Whether received audio should be decoded for this endpoint (else only encoded payloads
    /// are passed, and no decoder is made).
    fn wants_pcm(&self) -> bool {
        false
    }

    /// Which ways of pressing keys this endpoint hears (in-band detection decodes the audio).
    fn dtmf_sources(&self) -> DtmfSourcesConfig {
        DtmfSourcesConfig {
            rfc4733: true,
            inband: false,
            chat: false,
        }
    }

    /// Why this endpoint cannot serve the call, if it found out before media flows (asked
    /// until then; afterwards it says so with [`EndpointEvent::Fail`]).
    fn unavailable(&mut self) -> Option<EndReason> {
        None
    }

    /// Media is flowing: the call is connected.
    fn start(&mut self, _call: &CallInfo) {}

    /// Received audio, in order.
    fn on_audio(&mut self, audio: Incoming<'_>);

    /// The caller pressed a key (reported once per press, whatever way it came).
    fn on_dtmf(&mut self, _digit: Digit) {}

    /// What to send for the next packet time.
    fn next_frame(&mut self) -> Outgoing<'_>;

    /// A request to the call, if any.
    fn poll_event(&mut self) -> Option<EndpointEvent> {
        None
    }

    /// Nobody a [`EndpointEvent::Connect`] rang answered (or nobody could be rung), and why.
    fn on_connect_failed(&mut self, _reason: EndReason) {}

    /// The call is over, for `reason`: called once, last (before [`Endpoint::report`]), so
    /// that what the endpoint keeps (a recording) says how the call really ended.
    fn on_end(&mut self, _reason: EndReason) {}

    /// Whether [`Endpoint::report`] wants the caller's disco#info features (asked when the call
    /// starts).
    fn wants_client_features(&self) -> bool {
        false
    }

    /// The call is over: what to tell the caller in a chat message, given what it saw.
    fn report(&mut self, _call: &CallReport<'_>) -> Option<String> {
        None
    }
}

/// What a call saw, for an endpoint's [`Endpoint::report`] at its end.
#[derive(Debug)]
pub struct CallReport<'a> {
    /// The caller's offer, as negotiated.
    pub offer: &'a Negotiated,
    /// Whether the caller rang with XEP-0353 first.
    pub via_jmi: bool,
    /// The features of the caller's disco#info; `None` if it did not answer.
    pub client_features: Option<&'a [String]>,
    /// The remote candidates the caller gave, by type (`host`, `srflx`, `prflx`, `relay`).
    pub remote_candidates: Vec<(&'static str, usize)>,
    /// The ICE pair the call used last, if one was selected.
    pub selected_pair: Option<&'a str>,
    /// The audio figures.
    pub audio: crate::media::stats::AudioSummary,
    /// How long the call lasted.
    pub duration: Duration,
}
