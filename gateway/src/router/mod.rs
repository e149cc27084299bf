//! The router: one task that owns the signalling core, the virtual JIDs and the calls. It takes
//! stanzas from the component link and events from call tasks, feeds them to the core, and acts
//! on the core's outputs (stanzas out, calls started and stopped).

mod admin;
mod dial;
mod inbound;
mod outbound;
mod presence;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jid::{BareJid, Jid};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use xmpp_parsers::stanza::Stanza;

use crate::call::{CallEvent, CallEvents};
use crate::call::{CallHandle, Calls};
use crate::jingle::{Output, Signalling};
use crate::metrics::Metrics;
use crate::rate::{KeyedBuckets, LogThrottle, Rate, Taken};
use crate::reload::Reloaded;
use crate::types::CallId;
use crate::voicemail::Voicemail;
use crate::xmpp::disco::CalleeInfo;
use crate::xmpp::link::LinkEvent;
use crate::xmpp::outbox::{Lane, NotQueued, Outbox};
use crate::xmpp::requests::{PendingRequests, Request};
use crate::xmpp::subscribers::Subscribers;

/// Everything the router is built from.
pub struct RouterParts {
    /// The component domain.
    pub domain: BareJid,
    /// Name shown in the domain's disco identity.
    pub name: String,
    /// The virtual JIDs by local part.
    pub callees: BTreeMap<String, CalleeInfo>,
    /// The signalling core.
    pub core: Signalling,
    /// Presence subscribers.
    pub subscribers: Subscribers,
    /// Starts and stops call tasks.
    pub calls: Calls,
    /// The mailboxes (for their ad-hoc commands).
    pub voicemail: Arc<Voicemail>,
    /// Where calls and the link are counted.
    pub metrics: Arc<Metrics>,
    /// Stanzas other tasks ask the router to send.
    pub requests: mpsc::UnboundedReceiver<Request>,
    /// Whether the component is connected, for those tasks.
    pub online: watch::Sender<bool>,
    /// Reloaded configs' virtual JIDs and endpoints.
    pub reloads: mpsc::UnboundedReceiver<Reloaded>,
    /// Whom the gateway may ring for callers.
    pub outbound: crate::config::OutboundConfig,
    /// Who may run the admin commands.
    pub admin: crate::config::AdminConfig,
    /// Where an admin's `reload` asks for the config file to be read again.
    pub rereads: mpsc::UnboundedSender<crate::reload::RereadRequest>,
    /// For answers sent after the handler returned (an admin's `reload`).
    pub xmpp: crate::xmpp::requests::XmppHandle,
}

/// The router's state.
pub struct Router {
    domain: BareJid,
    name: String,
    callees: BTreeMap<String, CalleeInfo>,
    core: Signalling,
    subscribers: Subscribers,
    calls: Calls,
    active: HashMap<CallId, CallHandle>,
    /// Calls told to stop whose tasks are still releasing their media.
    stopping: Vec<CallHandle>,
    outbox: Outbox,
    call_events: CallEvents,
    pending: PendingRequests,
    online: watch::Sender<bool>,
    voicemail: Arc<Voicemail>,
    metrics: Arc<Metrics>,
    /// Calls whose session-accept has not gone out yet, by sid: the call, and when it started.
    accepting: HashMap<String, (CallId, std::time::Instant)>,
    /// The calls placed for callers.
    dialer: dial::Dialer,
    /// Messages endpoints send for each caller (an IVR's `send_digits`), rate-limited.
    messages_per_caller: KeyedBuckets<jid::BareJid>,
    /// Presence announcements still to go out after a reconnect, paced.
    announcements: std::collections::VecDeque<(Jid, jid::BareJid)>,
    /// Log lines about stanzas dropped on the way in and out, which outsiders can cause.
    dropped_log: LogThrottle,
    not_sent_log: LogThrottle,
    refused_log: LogThrottle,
    admin: crate::config::AdminConfig,
    rereads: mpsc::UnboundedSender<crate::reload::RereadRequest>,
    xmpp: crate::xmpp::requests::XmppHandle,
}

/// Why the router stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterExit {
    /// The gateway was asked to stop.
    Shutdown,
    /// The component link's task ended on its own: the process must not carry on without it.
    LinkGone,
}

/// Messages a minute the endpoints of one caller's calls may send (an IVR's `send_digits`).
const MESSAGES_PER_CALLER_PER_MINUTE: u32 = 10;

/// Log lines about what outsiders cause (dropped stanzas, refused calls): this many at once,
/// then one per period, each with the count of those held back.
const LOG_BURST: u32 = 10;
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// How long a caller's client may take to answer disco#info (the call doctor asks).
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Features of a caller's disco#info kept at most.
const MAX_CALLER_FEATURES: usize = 256;

/// How long shutdown waits for the last stanzas to leave and calls to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

impl Router {
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
        let mut requests = parts.requests;
        let mut reloads = parts.reloads;
        let mut router = Router {
            domain: parts.domain,
            name: parts.name,
            callees: parts.callees,
            core: parts.core,
            subscribers: parts.subscribers,
            calls: parts.calls,
            active: HashMap::new(),
            outbox,
            stopping: Vec::new(),
            call_events,
            pending: PendingRequests::default(),
            online: parts.online,
            voicemail: parts.voicemail,
            metrics: parts.metrics,
            accepting: HashMap::new(),
            dialer: dial::Dialer::new(parts.outbound),
            messages_per_caller: KeyedBuckets::new(
                Rate::per_minute(MESSAGES_PER_CALLER_PER_MINUTE),
                crate::jingle::MAX_TRACKED_CALLERS,
            ),
            announcements: std::collections::VecDeque::new(),
            dropped_log: LogThrottle::new(LOG_BURST, LOG_PERIOD),
            not_sent_log: LogThrottle::new(LOG_BURST, LOG_PERIOD),
            refused_log: LogThrottle::new(LOG_BURST, LOG_PERIOD),
            admin: parts.admin,
            rereads: parts.rereads,
            xmpp: parts.xmpp,
        };
        let mut announce = tokio::time::interval(presence::ANNOUNCE_TICK);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                    Some(event) => router.handle_link_event(event),
                    None => break RouterExit::LinkGone,
                },
                Some((call_id, event)) = call_event_rx.recv() => router.handle_call_event(call_id, event),
                Some(request) = requests.recv() => {
                    // The gateway's own messages and requests (voicemail delivery) are
                    // signalling: a flood from outside must not push them out.
                    let stanza = router.pending.stanza(request);
                    router.send_in(stanza, Lane::Signalling);
                }
                Some(reloaded) = reloads.recv() => router.apply(reloaded),
                _ = announce.tick(), if !router.announcements.is_empty() => {
                    router.announce_some();
                }
                _ = timer => {
                    router.core.handle_timeout(now());
                    router.process_outputs();
                    router.stopping.retain(|call| !call.is_finished());
                }
            }
        };
        router.shut_down().await;
        exit
    }

    fn handle_call_event(&mut self, call_id: CallId, event: CallEvent) {
        match event {
            CallEvent::Media(event) => {
                self.core.handle_media(call_id, event);
                self.process_outputs();
            }
            CallEvent::Message { to, body } => {
                let Some(call) = self.active.get(&call_id) else {
                    return;
                };
                // A caller pressing keys must not be able to flood the recipient.
                let caller = call.peer().to_bare();
                if self.messages_per_caller.try_take(&caller, now()) != Taken::Yes {
                    tracing::info!(%caller, "too many messages from this caller's calls; not sent");
                    return;
                }
                let Some(callee) = self.callees.get(call.callee()) else {
                    return;
                };
                let (Ok(to), from) = (Jid::new(&to), callee.jid.clone()) else {
                    tracing::warn!(%to, "not a JID; message not sent");
                    return;
                };
                self.send(outbound::chat(from, to, body));
            }
            CallEvent::Connect(plan) => {
                self.start_connect(call_id, plan);
                self.process_outputs();
            }
            CallEvent::DiscoverCaller(reply) => self.discover_caller(call_id, reply),
            CallEvent::Report { callee, to, body } => {
                if self.messages_per_caller.try_take(&to, now()) != Taken::Yes {
                    tracing::info!(caller = %to, "too many messages from this caller's calls; report not sent");
                    return;
                }
                let Some(callee) = self.callees.get(&callee) else {
                    return;
                };
                self.send(outbound::chat(callee.jid.clone(), Jid::from(to), body));
            }
        }
    }

    /// Asks the caller of `call_id` for its disco#info (from the virtual JID it called) and
    /// hands its features to `reply`, or `None` when it does not answer within a few seconds.
    fn discover_caller(
        &mut self,
        call_id: CallId,
        reply: tokio::sync::oneshot::Sender<Option<Vec<String>>>,
    ) {
        let Some(call) = self.active.get(&call_id) else {
            return;
        };
        let Some(callee) = self.callees.get(call.callee()) else {
            return;
        };
        let (xmpp, from, to) = (
            self.xmpp.clone(),
            callee.jid.clone(),
            Jid::from(call.peer().clone()),
        );
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

    fn handle_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected => {
                self.online.send_replace(true);
                self.metrics.set_connected(true);
                self.announce_presence();
            }
            LinkEvent::Disconnected => {
                self.online.send_replace(false);
                self.metrics.set_connected(false);
            }
            LinkEvent::Stanza(stanza) => match *stanza {
                Stanza::Iq(iq) => self.handle_iq(iq),
                Stanza::Message(message) => self.handle_message(message),
                Stanza::Presence(presence) => self.handle_presence(presence),
            },
            LinkEvent::Invalid(invalid) => self.handle_invalid(*invalid),
        }
    }

    /// Acts on every output the core has queued, in order.
    fn process_outputs(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::StartCall(start) => {
                    let codec = start.offer.as_ref().map(|offer| offer.codec.name());
                    tracing::info!(
                        call_id = %start.call_id, callee = %start.callee, peer = %start.peer,
                        sid = %start.sid, codec = codec.unwrap_or("(placing the call)"), "call started"
                    );
                    self.metrics.call_started(&start.callee);
                    if start.offer.is_some() {
                        self.accepting
                            .insert(start.sid.to_string(), (start.call_id, now()));
                    }
                    let handle = self.calls.start(start, self.call_events.clone());
                    self.active.insert(handle.call_id(), handle);
                }
                Output::RemoteCandidates {
                    call_id,
                    candidates,
                } => {
                    if let Some(call) = self.active.get(&call_id) {
                        call.add_remote_candidates(candidates);
                    }
                }
                Output::IceRestart {
                    call_id,
                    ufrag,
                    pwd,
                    candidates,
                } => {
                    if let Some(call) = self.active.get(&call_id) {
                        call.restart_ice(ufrag, pwd, candidates);
                    }
                }
                Output::Answered { call_id, media } => {
                    tracing::info!(call_id = %call_id, codec = media.codec.name(), "answered");
                    self.attempt_answered(call_id, media);
                }
                Output::DialFailed { call_id, reason } => {
                    tracing::info!(call_id = %call_id, reason = %reason, "placed call not answered");
                    self.attempt_ended(call_id, reason);
                }
                Output::StopCall { call_id, reason } => {
                    tracing::info!(call_id = %call_id, reason = %reason, "call ended");
                    self.attempt_ended(call_id, reason);
                    self.caller_ended(call_id);
                    if let Some(call) = self.active.remove(&call_id) {
                        self.metrics
                            .call_ended(call.callee(), reason.as_str(), true);
                        self.accepting.retain(|_, (id, _)| *id != call_id);
                        call.stop();
                        // Kept until its task has released everything (shutdown waits for it).
                        self.stopping.retain(|call| !call.is_finished());
                        self.stopping.push(call);
                    }
                }
                Output::CallNotStarted {
                    callee,
                    peer,
                    reason,
                } => {
                    // Anyone can cause these, as fast as the server relays: a few are logged,
                    // then one every few seconds with the count of the others.
                    if let Some(held_back) = self.refused_log.allow(now()) {
                        tracing::info!(callee = %callee, peer = %peer, reason = %reason,
                            held_back, "call not started");
                    }
                    self.metrics.call_ended(&callee, reason.as_str(), false);
                }
                other => {
                    if let Output::JingleIq { jingle, .. } = &other {
                        self.note_accept(jingle);
                    }
                    if let Some(stanza) = outbound::stanza_for(other) {
                        self.send(stanza);
                    }
                }
            }
        }
    }

    /// Takes a reloaded config's virtual JIDs and endpoints for new calls. Virtual JIDs that
    /// are gone say goodbye to their subscribers; the others announce themselves again (their
    /// name or features may have changed).
    fn apply(&mut self, reloaded: Reloaded) {
        let gone: Vec<(String, Jid)> = self
            .callees
            .iter()
            .filter(|(name, _)| !reloaded.callees.contains_key(*name))
            .map(|(name, info)| (name.clone(), info.jid.clone()))
            .collect();
        for (name, jid) in gone {
            tracing::info!(%jid, "virtual JID removed");
            let subscribers: Vec<_> = self
                .subscribers
                .all()
                .into_iter()
                .filter(|(callee, _)| *callee == name)
                .map(|(_, subscriber)| subscriber)
                .collect();
            for subscriber in subscribers {
                let goodbye = xmpp_parsers::presence::Presence::new(
                    xmpp_parsers::presence::Type::Unavailable,
                )
                .with_from(jid.clone())
                .with_to(Jid::from(subscriber));
                self.send(Stanza::Presence(goodbye));
            }
        }
        self.core.set_callees(reloaded.admission);
        self.callees = reloaded.callees;
        self.calls.set_endpoints(reloaded.endpoints);
        self.dialer.set_config(reloaded.outbound);
        self.admin = reloaded.admin;
        self.announce_presence();
    }

    /// Times a call's setup when its session-accept goes out.
    fn note_accept(&mut self, jingle: &crate::protocol::jingle::Jingle) {
        if jingle.action == crate::protocol::jingle::Action::SessionAccept {
            if let Some((_, started)) = self.accepting.remove(&jingle.sid.0) {
                self.metrics.setup(now().saturating_duration_since(started));
            }
        }
    }

    /// Queues a stanza for the link in the lane its kind belongs to.
    fn send(&mut self, stanza: Stanza) {
        let lane = outbound::lane_of(&stanza);
        self.send_in(stanza, lane);
    }

    /// Queues a stanza for the link in `lane`. Never waits: a router that waited on the link
    /// while the link waits on the router would stop both. A full lane (the link is gone or
    /// stuck, or a flood filled the bulk lane) drops the stanza.
    fn send_in(&mut self, stanza: Stanza, lane: Lane) {
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
        tracing::info!(calls = self.active.len(), "shutting down: ending calls");
        self.online.send_replace(false);
        self.core.shutdown();
        self.process_outputs();
        self.say_goodbye();
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

    /// The bare virtual JID for `callee`, if it exists.
    fn callee(&self, jid: &Jid) -> Option<&CalleeInfo> {
        if jid.domain() != self.domain.domain() {
            return None;
        }
        self.callees.get(jid.node()?.as_str())
    }
}

/// The current time for the sans-IO core.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
