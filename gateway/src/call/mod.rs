//! Call tasks: one per call, owning its media leg and its endpoint. The router talks to a call
//! through a [`CallHandle`]; the call reports back through [`MediaEvent`]s.

mod audio;
mod task;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::EndpointKind;
use crate::endpoint::{Echo, Endpoint};
use crate::jingle::{CallId, CallStart, EndReason, MediaEvent};
use crate::media::engine::MediaEngine;
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
    Stop,
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
    kinds: HashMap<String, EndpointKind>,
}

impl Calls {
    /// Call tasks on `engine`, with endpoints by virtual JID local part.
    pub fn new(engine: Arc<MediaEngine>, kinds: HashMap<String, EndpointKind>) -> Self {
        Self { engine, kinds }
    }

    /// Starts the media leg and endpoint of a call.
    pub fn start(
        &self,
        start: CallStart,
        events: mpsc::UnboundedSender<(CallId, MediaEvent)>,
    ) -> CallHandle {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let call_id = start.call_id;
        let task = match self.kinds.get(&start.callee).and_then(endpoint_for) {
            Some(endpoint) => tokio::spawn(task::run_call(
                self.engine.clone(),
                endpoint,
                start,
                command_rx,
                events,
            )),
            None => {
                // The signalling core only starts calls to endpoints that are available.
                let _ = events.send((call_id, MediaEvent::Ended(EndReason::EndpointUnavailable)));
                tokio::spawn(async {})
            }
        };
        CallHandle {
            call_id,
            commands,
            task,
        }
    }
}

/// A new endpoint of `kind`, if this build has it.
fn endpoint_for(kind: &EndpointKind) -> Option<Box<dyn Endpoint>> {
    match kind {
        EndpointKind::Echo => Some(Box::new(Echo::default())),
        EndpointKind::Voicemail | EndpointKind::Ivr | EndpointKind::SoundDevice => None,
    }
}
