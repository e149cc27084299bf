//! The router: a thin async shell over [`RouterCore`], the sans-IO core that owns the Jingle
//! core, the virtual JIDs, presence and dialing. The shell moves values between the component
//! link, the call tasks, the clock and the core, and does what the core's outputs say: queue
//! stanzas, start, command and stop call tasks, make bridges, read the config again, ask
//! callers' clients what they support.

mod admin;
mod core;
mod dial;
mod inbound;
mod outbound;
mod presence;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jid::Jid;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use xmpp_parsers::iq::Iq;

use crate::call::{CallCommand, CallEvents, CallHandle, Calls};
use crate::endpoint::bridge;
use crate::mailbox::Mailboxes;
use crate::metrics::Metrics;
use crate::rate::LogThrottle;
use crate::reload::{Reloaded, RereadRequest};
use crate::types::CallId;
use crate::xmpp::iq_error::IqError;
use crate::xmpp::link::LinkEvent;
use crate::xmpp::outbox::{Lane, NotQueued, Outbox};
use crate::xmpp::requests::{Request, XmppHandle};

pub use self::core::{Ids, RouterCore, RouterCoreParts, RouterOutput};

/// Everything the router is built from besides its core.
pub struct RouterParts {
    /// The router's logic.
    pub core: RouterCore,
    /// Starts and stops call tasks.
    pub calls: Calls,
    /// The mailboxes, for their owners' ad-hoc commands.
    pub mailboxes: Arc<Mailboxes>,
    /// Where stanzas not sent are counted.
    pub metrics: Arc<Metrics>,
    /// Stanzas other tasks ask the router to send.
    pub requests: mpsc::UnboundedReceiver<Request>,
    /// Whether the component is connected, for those tasks.
    pub online: watch::Sender<bool>,
    /// Reloaded configs' routes and endpoints.
    pub reloads: mpsc::UnboundedReceiver<Reloaded>,
    /// Where an admin's `reload` asks for the config file to be read again.
    pub rereads: mpsc::UnboundedSender<RereadRequest>,
    /// For answers sent after the core is done with a request (an admin's `reload`) and the
    /// IQs the router asks (a caller's disco#info).
    pub xmpp: XmppHandle,
}

/// The shell's state.
struct Router {
    core: RouterCore,
    calls: Calls,
    mailboxes: Arc<Mailboxes>,
    active: HashMap<CallId, CallHandle>,
    /// Calls told to stop whose tasks are still releasing their media.
    stopping: Vec<CallHandle>,
    outbox: Outbox,
    call_events: CallEvents,
    online: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    rereads: mpsc::UnboundedSender<RereadRequest>,
    xmpp: XmppHandle,
    /// Log lines about stanzas the link could not take.
    not_sent_log: LogThrottle,
}

/// Why the router stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterExit {
    /// The gateway was asked to stop.
    Shutdown,
    /// The component link's task ended on its own: the process must not carry on without it.
    LinkGone,
}

/// Log lines about stanzas not sent: this many at once, then one per period.
const LOG_BURST: u32 = 10;
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// How long a caller's client may take to answer disco#info (the call doctor asks).
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Features of a caller's disco#info kept at most.
const MAX_CALLER_FEATURES: usize = 256;

/// How long an admin's reload may take before its answer says so.
const RELOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long shutdown waits for the last stanzas to leave and calls to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs the router until `shutdown` is cancelled, then ends every call with a Jingle reason,
/// says goodbye with unavailable presence and lets the link close the stream. Returns early,
/// ending the calls too, if the link's task ends.
pub async fn run(
    parts: RouterParts,
    mut link_events: mpsc::Receiver<LinkEvent>,
    outbox: Outbox,
    shutdown: CancellationToken,
) -> RouterExit {
    let (call_events, mut call_event_rx) = mpsc::unbounded_channel();
    let (mut requests, mut reloads) = (parts.requests, parts.reloads);
    let mut router = Router {
        core: parts.core,
        calls: parts.calls,
        mailboxes: parts.mailboxes,
        active: HashMap::new(),
        stopping: Vec::new(),
        outbox,
        call_events,
        online: parts.online,
        metrics: parts.metrics,
        rereads: parts.rereads,
        xmpp: parts.xmpp,
        not_sent_log: LogThrottle::new(LOG_BURST, LOG_PERIOD),
    };
    let exit = loop {
        let deadline = router.core.poll_timeout();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break RouterExit::Shutdown,
            event = link_events.recv() => match event {
                Some(LinkEvent::Connected) => {
                    router.online.send_replace(true);
                    router.core.handle_connected(now());
                }
                Some(LinkEvent::Disconnected) => {
                    router.online.send_replace(false);
                    router.core.handle_disconnected();
                }
                Some(LinkEvent::Stanza(stanza)) => router.core.handle_stanza(now(), *stanza),
                Some(LinkEvent::Invalid(invalid)) => router.core.handle_invalid(now(), *invalid),
                None => break RouterExit::LinkGone,
            },
            Some((call_id, event)) = call_event_rx.recv() => {
                router.core.handle_call_event(now(), call_id, event);
            }
            Some(request) = requests.recv() => router.core.handle_request(request),
            Some(reloaded) = reloads.recv() => {
                router.calls.set_endpoints(reloaded.endpoints);
                router.core.handle_reload(now(), reloaded.routes);
            }
            _ = timer => {
                router.core.handle_timeout(now());
                router.stopping.retain(|call| !call.is_finished());
            }
        }
        router.act();
    };
    router.shut_down().await;
    exit
}

impl Router {
    /// Does what the core asks, in order.
    fn act(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                RouterOutput::Stanza { stanza, lane } => self.send(stanza, lane),
                RouterOutput::StartCall { start, figures } => {
                    let call_id = start.call_id;
                    let handle = self.calls.start(start, figures, self.call_events.clone());
                    self.active.insert(call_id, handle);
                }
                RouterOutput::Call { call_id, command } => {
                    if let Some(call) = self.active.get(&call_id) {
                        call.send(command);
                    }
                }
                RouterOutput::Bridge { caller, answered } => {
                    let stats = self.calls.media_stats();
                    let (caller_end, callee_end) = bridge::pair(caller.1, answered.1, stats);
                    if let Some(call) = self.active.get(&answered.0) {
                        call.send(CallCommand::Bridge(Box::new(callee_end)));
                    }
                    if let Some(call) = self.active.get(&caller.0) {
                        call.send(CallCommand::Bridge(Box::new(caller_end)));
                    }
                }
                RouterOutput::StopCall { call_id, reason } => {
                    if let Some(call) = self.active.remove(&call_id) {
                        call.stop(reason);
                        // Kept until its task has released everything (shutdown waits for it).
                        self.stopping.retain(|call| !call.is_finished());
                        self.stopping.push(call);
                    }
                }
                RouterOutput::Reread { request, command } => self.reread(request, command),
                RouterOutput::AdminMailboxes { request, command } => {
                    self.admin_mailboxes(request, command)
                }
                RouterOutput::MailboxCommand {
                    request,
                    mailbox,
                    command,
                } => self.mailbox_command(request, mailbox, command),
                RouterOutput::DiscoverCaller { from, to, reply } => {
                    self.discover_caller(from, to, reply)
                }
            }
        }
    }

    /// Has the config file read again, and answers the admin's IQ `request` with the outcome.
    fn reread(&self, request: (Jid, Jid, String), command: crate::protocol::adhoc::Command) {
        let (outcome, reloaded) = tokio::sync::oneshot::channel();
        let _ = self.rereads.send(outcome);
        let xmpp = self.xmpp.clone();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(RELOAD_ANSWER_TIMEOUT, reloaded).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err("the gateway is stopping".into()),
                Err(_) => Err("the reload is taking long; its outcome will be in the log".into()),
            };
            let response = crate::admin::reloaded(&command, outcome);
            let _ = xmpp.reply(answer(request, Ok(response.to_element())));
        });
    }

    /// Counts every mailbox's messages on the blocking pool, and answers the admin's IQ
    /// `request` with them.
    fn admin_mailboxes(
        &self,
        request: (Jid, Jid, String),
        command: crate::protocol::adhoc::Command,
    ) {
        let (mailboxes, xmpp) = (self.mailboxes.clone(), self.xmpp.clone());
        tokio::task::spawn_blocking(move || {
            let rows = || {
                mailboxes
                    .names()
                    .into_iter()
                    .map(|name| {
                        let messages = mailboxes.messages(&name);
                        let new = messages.iter().filter(|m| !m.heard).count();
                        crate::admin::MailboxRow {
                            saved: messages.len() - new,
                            new,
                            name,
                        }
                    })
                    .collect()
            };
            // The mailboxes command only ever replies.
            let outcome = match crate::admin::execute(&command, &[], rows) {
                Ok(crate::admin::AdminAction::Reply(response)) => Ok(response.to_element()),
                Ok(_) => Err(IqError::Unsupported),
                Err(error) => Err(IqError::from(error)),
            };
            let _ = xmpp.reply(answer(request, outcome));
        });
    }

    /// Runs a mailbox owner's command on the blocking pool (it reads and changes files), and
    /// answers the IQ `request` with its outcome.
    fn mailbox_command(
        &self,
        request: (Jid, Jid, String),
        mailbox: String,
        command: crate::protocol::adhoc::Command,
    ) {
        let (mailboxes, xmpp) = (self.mailboxes.clone(), self.xmpp.clone());
        tokio::task::spawn_blocking(move || {
            let requester = request.0.to_bare().to_string();
            let outcome =
                crate::mailbox::commands::execute(&mailboxes, &mailbox, &requester, &command)
                    .map(|response| response.to_element())
                    .map_err(IqError::from);
            let _ = xmpp.reply(answer(request, outcome));
        });
    }

    /// Asks `to` for its disco#info from `from` and hands its features to `reply`, or `None`
    /// when it does not answer within a few seconds.
    fn discover_caller(
        &self,
        from: Jid,
        to: Jid,
        reply: tokio::sync::oneshot::Sender<Option<Vec<String>>>,
    ) {
        let xmpp = self.xmpp.clone();
        tokio::spawn(async move {
            let query = minidom::Element::builder("query", xmpp_parsers::ns::DISCO_INFO).build();
            let answer = xmpp.iq(from, to, true, query, DISCOVER_TIMEOUT).await;
            // Read leniently (clients add forms and odd identities) and boundedly.
            let features = answer.ok().flatten().map(|payload| {
                payload
                    .children()
                    .filter(|child| child.is("feature", xmpp_parsers::ns::DISCO_INFO))
                    .filter_map(|feature| feature.attr("var"))
                    .take(MAX_CALLER_FEATURES)
                    .map(str::to_string)
                    .collect()
            });
            let _ = reply.send(features);
        });
    }

    /// Queues a stanza for the link in `lane`. Never waits: a router that waited on the link
    /// while the link waits on the router would stop both. A full lane (the link is gone or
    /// stuck, or a flood filled the bulk lane) drops the stanza.
    fn send(&mut self, stanza: xmpp_parsers::stanza::Stanza, lane: Lane) {
        match self.outbox.send(stanza, lane) {
            Ok(()) => {}
            Err(NotQueued::Full(lane)) => {
                self.metrics.stanza_not_sent(lane.as_str());
                if let Some(held_back) = self.not_sent_log.allow(now()) {
                    tracing::warn!(
                        lane = lane.as_str(),
                        held_back,
                        "the component link is not keeping up; dropping a stanza"
                    );
                }
            }
            Err(NotQueued::Closed) => {
                tracing::debug!("the component link has stopped; dropping a stanza")
            }
        }
    }

    async fn shut_down(mut self) {
        self.online.send_replace(false);
        self.core.handle_shutdown(now());
        self.act();
        let calls = std::mem::take(&mut self.stopping);
        let closed = tokio::time::timeout(SHUTDOWN_GRACE, async {
            for call in calls {
                call.finished().await;
            }
        })
        .await;
        if closed.is_err() {
            tracing::warn!("some calls did not release their media in time");
        }
    }
}

/// The answer to the IQ `request` (its sender, recipient and id): a result with the payload,
/// or the error.
fn answer(request: (Jid, Jid, String), outcome: Result<minidom::Element, IqError>) -> Iq {
    let (from, to, id) = request;
    match outcome {
        Ok(payload) => Iq::Result {
            from: Some(to),
            to: Some(from),
            id,
            payload: Some(payload),
        },
        Err(error) => Iq::Error {
            from: Some(to),
            to: Some(from),
            id,
            error: error.to_stanza_error(),
            payload: None,
        },
    }
}

/// The current time for the sans-IO cores.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
