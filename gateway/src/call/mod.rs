//! Call tasks: one per call, owning its media leg and its endpoint. The router talks to a call
//! through a [`CallHandle`]; the call reports back through [`CallEvent`]s.

pub(crate) mod audio;
mod task;

use std::sync::Arc;

use jid::{BareJid, FullJid};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::endpoint::{DialPlan, Endpoint, EndpointFactory};
use crate::jingle::negotiate::{Codec, Negotiated};
use crate::jingle::{CallId, CallStart, EndReason, MediaEvent};
use crate::media::engine::MediaEngine;
use crate::metrics::Metrics;
use crate::protocol::ice_udp::Candidate;

/// A command from the router to a call task.
pub enum CallCommand {
    /// Candidates trickled by the caller.
    RemoteCandidates(Vec<Candidate>),
    /// The caller restarted ICE.
    RestartIce {
        /// New remote ufrag.
        ufrag: String,
        /// New remote password.
        pwd: String,
        /// Candidates that came with them.
        candidates: Vec<Candidate>,
    },
    /// Keys the caller typed in a chat message.
    ChatDigits(String),
    /// The callee answered the call we placed: connect the media with this.
    Answered(Negotiated),
    /// From now on the call is served by this endpoint (one side of a bridge).
    Bridge(Box<dyn Endpoint>),
    /// Nobody the endpoint's [`CallEvent::Connect`] rang answered.
    ConnectFailed(EndReason),
    /// The session is over: release everything.
    Stop,
}

/// What a call task tells the router.
#[derive(Debug)]
pub enum CallEvent {
    /// For the signalling core.
    Media(MediaEvent),
    /// Send `body` as a chat message from the called virtual JID to `to`.
    Message {
        /// Recipient JID.
        to: String,
        /// Text.
        body: String,
    },
    /// Ring people for this call's caller (an IVR `connect`, a mailbox's follow-me).
    Connect(DialPlan),
}

/// The channel call tasks report on.
pub type CallEvents = mpsc::UnboundedSender<(CallId, CallEvent)>;

/// The router's side of a running call.
#[derive(Debug)]
pub struct CallHandle {
    call_id: CallId,
    peer: FullJid,
    callee: String,
    codec: Option<Codec>,
    commands: mpsc::UnboundedSender<CallCommand>,
    task: JoinHandle<()>,
}

impl CallHandle {
    /// The call.
    pub fn call_id(&self) -> CallId {
        self.call_id
    }

    /// The local part of the virtual JID called (or calling, for a call we placed).
    pub fn callee(&self) -> &str {
        &self.callee
    }

    /// The call's codec, once negotiated.
    pub fn codec(&self) -> Option<Codec> {
        self.codec
    }

    /// The callee answered the call we placed, with `media`.
    pub fn answered(&mut self, media: Negotiated) {
        self.codec = Some(media.codec);
        let _ = self.commands.send(CallCommand::Answered(media));
    }

    /// Hands the call to `endpoint` (one side of a bridge).
    pub fn bridge(&self, endpoint: Box<dyn Endpoint>) {
        let _ = self.commands.send(CallCommand::Bridge(endpoint));
    }

    /// Tells the call's endpoint that nobody it asked for answered.
    pub fn connect_failed(&self, reason: EndReason) {
        let _ = self.commands.send(CallCommand::ConnectFailed(reason));
    }

    /// Whether this is a call from `peer` (any device of the user) to the virtual JID `callee`.
    pub fn is_between(&self, peer: &BareJid, callee: &str) -> bool {
        self.peer.to_bare() == *peer && self.callee == callee
    }

    /// Passes trickled candidates to the media leg.
    pub fn add_remote_candidates(&self, candidates: Vec<Candidate>) {
        let _ = self
            .commands
            .send(CallCommand::RemoteCandidates(candidates));
    }

    /// Restarts ICE with the caller's new credentials.
    pub fn restart_ice(&self, ufrag: String, pwd: String, candidates: Vec<Candidate>) {
        let _ = self.commands.send(CallCommand::RestartIce {
            ufrag,
            pwd,
            candidates,
        });
    }

    /// Passes keys typed in a chat message.
    pub fn chat_digits(&self, text: String) {
        let _ = self.commands.send(CallCommand::ChatDigits(text));
    }

    /// Ends the call's media and endpoint; the task keeps running until it has released
    /// everything (see [`CallHandle::finished`]).
    pub fn stop(&self) {
        let _ = self.commands.send(CallCommand::Stop);
    }

    /// Whether the call task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the call task has released everything.
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

/// Starts call tasks.
pub struct Calls {
    engine: Arc<MediaEngine>,
    endpoints: Arc<EndpointFactory>,
    metrics: Arc<Metrics>,
}

impl Calls {
    /// Call tasks on `engine`, with endpoints from `endpoints`, counted in `metrics`.
    pub fn new(
        engine: Arc<MediaEngine>,
        endpoints: Arc<EndpointFactory>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            engine,
            endpoints,
            metrics,
        }
    }

    /// The media counters of the calls' engine.
    pub fn media_stats(&self) -> &Arc<crate::media::stats::MediaStats> {
        &self.engine.stats
    }

    /// Endpoints for calls started from now on (calls in progress keep theirs).
    pub fn set_endpoints(&mut self, endpoints: Arc<EndpointFactory>) {
        self.endpoints = endpoints;
    }

    /// Starts the media leg and endpoint of a call.
    pub fn start(&self, start: CallStart, events: CallEvents) -> CallHandle {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let call_id = start.call_id;
        let peer = start.peer.clone();
        let callee = start.callee.clone();
        let codec = start.offer.as_ref().map(|offer| offer.codec);
        let endpoint = match start.offer {
            Some(_) => self
                .endpoints
                .create(&start.callee, &start.peer.to_string()),
            // A call we placed is bridged once answered.
            None => Ok(Box::new(crate::endpoint::bridge::Unbridged) as Box<dyn Endpoint>),
        };
        let task = match endpoint {
            Ok(endpoint) => tokio::spawn(task::run_call(
                self.engine.clone(),
                self.endpoints.clone(),
                self.metrics.clone(),
                endpoint,
                start,
                command_rx,
                events,
            )),
            Err(reason) => {
                // The signalling core only starts calls to endpoints that exist and are
                // available; a sound device in use, or a mailbox removed meanwhile, ends here.
                let ended = CallEvent::Media(MediaEvent::Ended(reason));
                let _ = events.send((call_id, ended));
                tokio::spawn(async {})
            }
        };
        CallHandle {
            call_id,
            peer,
            callee,
            codec,
            commands,
            task,
        }
    }
}
