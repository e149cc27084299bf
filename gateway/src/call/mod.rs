//! Call tasks: one per call, owning its media leg and its endpoint. The router talks to a call
//! through a [`CallHandle`]; the call reports back through [`CallEvent`]s.

pub(crate) mod audio;
mod task;

use std::sync::Arc;

use jid::BareJid;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::endpoint::{DialPlan, Endpoint, EndpointFactory};
use crate::jingle::negotiate::Negotiated;
use crate::jingle::{CallStart, MediaEvent};
use crate::media::engine::MediaEngine;
use crate::metrics::Metrics;
use crate::protocol::ice_udp::Candidate;
use crate::types::{CallId, EndReason};

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
    /// The session is over, for this reason: release everything.
    Stop(EndReason),
}

impl std::fmt::Debug for CallCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RemoteCandidates(candidates) => {
                f.debug_tuple("RemoteCandidates").field(candidates).finish()
            }
            Self::RestartIce {
                ufrag, candidates, ..
            } => f
                .debug_struct("RestartIce")
                .field("ufrag", ufrag)
                .field("candidates", candidates)
                .finish_non_exhaustive(),
            Self::ChatDigits(text) => f.debug_tuple("ChatDigits").field(text).finish(),
            Self::Answered(media) => f.debug_tuple("Answered").field(&media.codec).finish(),
            Self::Bridge(_) => f.write_str("Bridge"),
            Self::ConnectFailed(reason) => f.debug_tuple("ConnectFailed").field(reason).finish(),
            Self::Stop(reason) => f.debug_tuple("Stop").field(reason).finish(),
        }
    }
}

/// Commands from the caller's side (candidates, ICE restarts, chat keys) that may wait for a
/// call task at once; more are dropped, so a peer flooding the router cannot fill a call's
/// queue without bound.
pub const MAX_QUEUED_PEER_COMMANDS: usize = 32;

/// A call task's side of its commands: the router's own (never dropped, few by design) before
/// those the caller's stanzas cause (bounded).
pub struct CallCommands {
    control: mpsc::UnboundedReceiver<CallCommand>,
    peer: mpsc::Receiver<CallCommand>,
}

impl CallCommands {
    /// The next command; `None` once the router has let the call go.
    pub async fn recv(&mut self) -> Option<CallCommand> {
        tokio::select! {
            biased;
            command = self.control.recv() => command,
            Some(command) = self.peer.recv() => Some(command),
        }
    }
}

/// What a call task tells the router.
#[derive(Debug)]
pub enum CallEvent {
    /// For the signalling core.
    Media(MediaEvent),
    /// Send `body` as a chat message from the called virtual JID to `to`.
    Message {
        /// Recipient.
        to: jid::Jid,
        /// Text.
        body: String,
    },
    /// Ring people for this call's caller (an IVR `connect`, a mailbox's follow-me).
    Connect(DialPlan),
    /// Ask the caller's client what it supports (disco#info) and hand back its features, or
    /// `None` if it does not answer.
    DiscoverCaller(tokio::sync::oneshot::Sender<Option<Vec<String>>>),
    /// The call is over: send the caller this report from the virtual JID called (its local
    /// part), even though the call's handle may be gone by then.
    Report {
        /// The virtual JID's local part.
        virtual_jid: String,
        /// The caller.
        to: BareJid,
        /// Text.
        body: String,
    },
}

/// What a running call shows of itself (the admins' list of calls), kept by its task: the
/// ICE pair when one is selected, the receive figures at each RTCP report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFigures {
    /// RTP packets received so far.
    pub received: u64,
    /// RTP packets expected so far from the sequence numbers.
    pub expected: u64,
    /// Interarrival jitter.
    pub jitter_ms: f64,
    /// The round-trip time the peer's RTCP reports gave last.
    pub round_trip_ms: Option<f64>,
    /// The ICE pair in use (types and addresses).
    pub path: Option<String>,
}

/// A call's figures, shared by its task (which writes) and its handle (which reads).
pub type SharedFigures = Arc<std::sync::Mutex<CallFigures>>;

/// The channel call tasks report on.
pub type CallEvents = mpsc::UnboundedSender<(CallId, CallEvent)>;

/// The shell's side of a running call task.
#[derive(Debug)]
pub struct CallHandle {
    call_id: CallId,
    commands: mpsc::UnboundedSender<CallCommand>,
    peer_commands: mpsc::Sender<CallCommand>,
    task: JoinHandle<()>,
}

impl CallHandle {
    /// The call.
    pub fn call_id(&self) -> CallId {
        self.call_id
    }

    /// Passes `command` to the task. What the peer's stanzas cause (candidates, ICE restarts,
    /// chat keys) waits in a bounded queue and is dropped when the call has too many waiting;
    /// the router's own commands always go through.
    pub fn send(&self, command: CallCommand) {
        match command {
            CallCommand::RemoteCandidates(_)
            | CallCommand::RestartIce { .. }
            | CallCommand::ChatDigits(_) => self.queue_peer_command(command),
            CallCommand::Answered(_)
            | CallCommand::Bridge(_)
            | CallCommand::ConnectFailed(_)
            | CallCommand::Stop(_) => {
                let _ = self.commands.send(command);
            }
        }
    }

    fn queue_peer_command(&self, command: CallCommand) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.peer_commands.try_send(command) {
            tracing::debug!(call_id = %self.call_id, "the call is not keeping up with its peer; dropping a request");
        }
    }

    /// Ends the call's media and endpoint, telling the endpoint `reason`; the task keeps
    /// running until it has released everything (see [`CallHandle::finished`]).
    pub fn stop(&self, reason: EndReason) {
        self.send(CallCommand::Stop(reason));
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

    /// Starts the media leg and endpoint of a call, which keeps its figures in `figures`.
    pub fn start(
        &self,
        start: CallStart,
        figures: SharedFigures,
        events: CallEvents,
    ) -> CallHandle {
        let (commands, control) = mpsc::unbounded_channel();
        let (peer_commands, peer) = mpsc::channel(MAX_QUEUED_PEER_COMMANDS);
        let command_rx = CallCommands { control, peer };
        let call_id = start.call_id;
        let endpoint = match &start.offer {
            Some(offer) => self
                .endpoints
                .create(&start.virtual_jid, &start.peer, offer.codec),
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
                figures.clone(),
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
            commands,
            peer_commands,
            task,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flooding_peer_fills_only_its_own_bounded_queue() {
        let (commands, control) = mpsc::unbounded_channel();
        let (peer_commands, peer) = mpsc::channel(MAX_QUEUED_PEER_COMMANDS);
        let mut queue = CallCommands { control, peer };
        let handle = CallHandle {
            call_id: CallId(1),
            commands,
            peer_commands,
            task: tokio::spawn(async {}),
        };
        for _ in 0..10 * MAX_QUEUED_PEER_COMMANDS {
            handle.send(CallCommand::ChatDigits("1".into()));
        }
        handle.stop(EndReason::PeerGone);
        // The router's stop comes first, then what the peer's queue held.
        assert!(matches!(
            queue.recv().await,
            Some(CallCommand::Stop(EndReason::PeerGone))
        ));
        let mut queued = 0;
        while let Ok(Some(command)) =
            tokio::time::timeout(std::time::Duration::from_millis(10), queue.recv()).await
        {
            assert!(matches!(command, CallCommand::ChatDigits(_)));
            queued += 1;
        }
        assert_eq!(queued, MAX_QUEUED_PEER_COMMANDS);
    }
}
