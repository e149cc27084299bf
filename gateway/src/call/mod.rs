//! Call tasks: one per call, owning its media leg and its endpoint. The router talks to a call
//! through a [`CallHandle`]; the call reports back through [`MediaEvent`]s.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::jingle::{CallId, CallStart, EndReason, MediaEvent};
use crate::protocol::ice_udp::Candidate;

/// A command from the router to a call task.
#[derive(Debug)]
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
    /// The session is over: release everything.
    Stop(EndReason),
}

/// The router's side of a running call.
#[derive(Debug)]
pub struct CallHandle {
    call_id: CallId,
    commands: mpsc::UnboundedSender<CallCommand>,
    task: JoinHandle<()>,
}

impl CallHandle {
    /// The call.
    pub fn call_id(&self) -> CallId {
        self.call_id
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

    /// Ends the call's media and endpoint.
    pub fn stop(self, reason: EndReason) {
        let _ = self.commands.send(CallCommand::Stop(reason));
    }

    /// Waits until the call task has released everything.
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

/// Starts call tasks.
#[derive(Debug, Clone, Default)]
pub struct Calls {}

impl Calls {
    /// Starts the media leg and endpoint of a call.
    pub fn start(
        &self,
        start: CallStart,
        events: mpsc::UnboundedSender<(CallId, MediaEvent)>,
    ) -> CallHandle {
        let (commands, mut command_rx) = mpsc::unbounded_channel();
        let call_id = start.call_id;
        let task = tokio::spawn(async move {
            tracing::warn!(%call_id, "no media engine in this build: ending the call");
            let _ = events.send((call_id, MediaEvent::Ended(EndReason::MediaError)));
            while let Some(command) = command_rx.recv().await {
                if matches!(command, CallCommand::Stop(_)) {
                    break;
                }
            }
        });
        CallHandle {
            call_id,
            commands,
            task,
        }
    }
}
