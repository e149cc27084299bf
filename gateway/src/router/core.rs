//! The router core, sans-IO like the Jingle core it owns: stanzas, call events, reloads and
//! the clock come in through `handle_*(now, ...)`; stanzas to send and orders for call tasks
//! leave through [`RouterCore::poll_output`]; [`RouterCore::poll_timeout`] gives the next
//! deadline. It never reads the clock, touches a socket or spawns; ids come from [`Ids`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::{BareJid, FullJid, Jid};
use xmpp_parsers::stanza::Stanza;

use super::dial::Dialer;
use super::outbound;
use crate::call::{CallCommand, CallEvent, SharedFigures};
use crate::config::AdminConfig;
use crate::jingle::{CallStart, Output, Signalling};
use crate::mailbox::Mailboxes;
use crate::metrics::Metrics;
use crate::protocol::adhoc::Command;
use crate::rate::{KeyedBuckets, LogThrottle, Rate, Taken};
use crate::routes::RouteTable;
use crate::types::{CallId, Codec, EndReason};
use crate::xmpp::disco::VirtualJidInfo;
use crate::xmpp::outbox::Lane;
use crate::xmpp::requests::{PendingRequests, Request};
use crate::xmpp::subscribers::Subscribers;

/// Messages a minute the endpoints of one caller's calls may send (an IVR's `send_digits`).
const MESSAGES_PER_CALLER_PER_MINUTE: u32 = 10;

/// Log lines about what outsiders cause (dropped stanzas, refused calls): this many at once,
/// then one per period, each with the count of those held back.
const LOG_BURST: u32 = 10;
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// Everything the router core is built from.
pub struct RouterCoreParts {
    /// The component domain.
    pub domain: BareJid,
    /// Name shown in the domain's disco identity.
    pub name: String,
    /// The virtual JIDs, who may call them, whom the gateway may ring, its admins.
    pub routes: RouteTable,
    /// The Jingle core.
    pub jingle: Signalling,
    /// Presence subscribers.
    pub subscribers: Subscribers,
    /// The mailboxes (for their ad-hoc commands).
    pub voicemail: Arc<Mailboxes>,
    /// Where calls and stanzas are counted.
    pub metrics: Arc<Metrics>,
    /// Where the ids of the stanzas the router makes come from.
    pub ids: Ids,
}

/// Ids of the stanzas the router makes: a prefix unique to the process (random at start, fixed
/// in tests) and a counter.
#[derive(Debug)]
pub struct Ids {
    prefix: String,
    next: u64,
}

impl Ids {
    /// Ids starting with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: 0,
        }
    }

    /// The next id, `kind-<prefix><n>`.
    pub(super) fn next(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{kind}-{}{}", self.prefix, self.next)
    }
}

/// What the router core asks its shell to do, in order.
#[derive(Debug)]
pub enum RouterOutput {
    /// Queue a stanza for the link in `lane`.
    Stanza {
        /// The stanza.
        stanza: Stanza,
        /// Signalling before bulk.
        lane: Lane,
    },
    /// Start a call task; it reports its figures in `figures`.
    StartCall {
        /// The call.
        start: CallStart,
        /// Where its task keeps the figures admins see.
        figures: SharedFigures,
    },
    /// Tell a running call task something.
    Call {
        /// The call.
        call_id: CallId,
        /// What.
        command: CallCommand,
    },
    /// Bridge two calls: each is served from now on by one half of a bridge.
    Bridge {
        /// The caller's call and its codec.
        caller: (CallId, Codec),
        /// The call placed for it, answered, and its codec.
        answered: (CallId, Codec),
    },
    /// Stop a call task: its session is over, for `reason`.
    StopCall {
        /// The call.
        call_id: CallId,
        /// Why it ended (its endpoint is told).
        reason: EndReason,
    },
    /// Read the config file again for an admin, then answer the admin's IQ.
    Reread {
        /// The admin's IQ: its sender, recipient and id.
        request: (Jid, Jid, String),
        /// The command, for its answer.
        command: Command,
    },
    /// Answer an admin's `mailboxes` command (it counts every mailbox's messages, off the
    /// loop).
    AdminMailboxes {
        /// The admin's IQ: its sender, recipient and id.
        request: (Jid, Jid, String),
        /// The command.
        command: Command,
    },
    /// Run a mailbox's ad-hoc command for the IQ `request` (its sender, recipient and id),
    /// off the loop, and answer the IQ with its outcome.
    MailboxCommand {
        /// The IQ: its sender (who must own the mailbox), recipient and id.
        request: (Jid, Jid, String),
        /// The mailbox (its virtual JID's local part).
        mailbox: String,
        /// The command.
        command: Command,
    },
    /// Ask a caller's client for its disco#info, from the virtual JID it called, and hand its
    /// features to `reply` (`None` if it does not answer).
    DiscoverCaller {
        /// The virtual JID.
        from: Jid,
        /// The caller.
        to: Jid,
        /// Where the features go.
        reply: tokio::sync::oneshot::Sender<Option<Vec<String>>>,
    },
}

/// What the router knows of a call in progress.
#[derive(Debug)]
pub(super) struct CallRecord {
    /// The other party.
    pub(super) peer: FullJid,
    /// The virtual JID's local part (called, or calling for a call we placed).
    pub(super) virtual_jid: String,
    /// The call's codec, once negotiated.
    pub(super) codec: Option<Codec>,
    /// When it started.
    pub(super) started: Instant,
    /// Its figures, kept by its task.
    pub(super) figures: SharedFigures,
}

/// The router's logic: routing, presence, dialing, admin commands, reloads.
pub struct RouterCore {
    pub(super) domain: BareJid,
    pub(super) name: String,
    pub(super) virtual_jids: BTreeMap<String, VirtualJidInfo>,
    pub(super) jingle: Signalling,
    pub(super) subscribers: Subscribers,
    pub(super) calls: HashMap<CallId, CallRecord>,
    pub(super) pending: PendingRequests,
    pub(super) voicemail: Arc<Mailboxes>,
    pub(super) metrics: Arc<Metrics>,
    /// Calls whose session-accept has not gone out yet, by sid: the call, and when it started.
    accepting: HashMap<String, (CallId, Instant)>,
    /// The calls placed for callers.
    pub(super) dialer: Dialer,
    /// Messages endpoints send for each caller (an IVR's `send_digits`), rate-limited.
    messages_per_caller: KeyedBuckets<BareJid>,
    /// Presence announcements still to go out after a reconnect or reload, paced.
    pub(super) announcements: VecDeque<(Jid, BareJid)>,
    /// When the next announcements are due.
    pub(super) next_announcement: Option<Instant>,
    /// Log lines about stanzas dropped on the way in, and calls refused, which outsiders cause.
    pub(super) dropped_log: LogThrottle,
    refused_log: LogThrottle,
    pub(super) admin: AdminConfig,
    pub(super) ids: Ids,
    outputs: VecDeque<RouterOutput>,
}

impl RouterCore {
    /// A core with no calls.
    pub fn new(parts: RouterCoreParts) -> Self {
        let mut jingle = parts.jingle;
        jingle.set_virtual_jids(parts.routes.admission);
        Self {
            domain: parts.domain,
            name: parts.name,
            virtual_jids: parts.routes.virtual_jids,
            jingle,
            subscribers: parts.subscribers,
            calls: HashMap::new(),
            pending: PendingRequests::default(),
            voicemail: parts.voicemail,
            metrics: parts.metrics,
            accepting: HashMap::new(),
            dialer: Dialer::new(parts.routes.outbound),
            messages_per_caller: KeyedBuckets::new(
                Rate::per_minute(MESSAGES_PER_CALLER_PER_MINUTE),
                crate::jingle::MAX_TRACKED_CALLERS,
            ),
            announcements: VecDeque::new(),
            next_announcement: None,
            dropped_log: LogThrottle::new(LOG_BURST, LOG_PERIOD),
            refused_log: LogThrottle::new(LOG_BURST, LOG_PERIOD),
            admin: parts.routes.admin,
            ids: parts.ids,
            outputs: VecDeque::new(),
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<RouterOutput> {
        self.outputs.pop_front()
    }

    /// When [`RouterCore::handle_timeout`] is next due.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        match (self.jingle.poll_timeout(), self.next_announcement) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The component is connected (again): presence is announced to every subscriber.
    pub fn handle_connected(&mut self, now: Instant) {
        self.metrics.set_connected(true);
        self.announce_presence(now);
    }

    /// The component lost its connection.
    pub fn handle_disconnected(&mut self) {
        self.metrics.set_connected(false);
    }

    /// A stanza from the server.
    pub fn handle_stanza(&mut self, now: Instant, stanza: Stanza) {
        match stanza {
            Stanza::Iq(iq) => self.handle_iq(now, iq),
            Stanza::Message(message) => self.handle_message(now, message),
            Stanza::Presence(presence) => self.handle_presence(now, presence),
        }
    }

    /// A message or IQ the gateway's own tasks (voicemail delivery) send: signalling, so that
    /// a flood from outside cannot push it out.
    pub fn handle_request(&mut self, request: Request) {
        let id = self.ids.next("req");
        let stanza = self.pending.stanza(request, id);
        self.push(RouterOutput::Stanza {
            stanza,
            lane: Lane::Signalling,
        });
    }

    /// Something a call task reports.
    pub fn handle_call_event(&mut self, now: Instant, call_id: CallId, event: CallEvent) {
        match event {
            CallEvent::Media(event) => {
                self.jingle.handle_media(now, call_id, event);
                self.process_signalling(now);
            }
            CallEvent::Message { to, body } => {
                let Some(call) = self.calls.get(&call_id) else {
                    return;
                };
                // A caller pressing keys must not be able to flood the recipient.
                let caller = call.peer.to_bare();
                if self.messages_per_caller.try_take(&caller, now) != Taken::Yes {
                    tracing::info!(%caller, "too many messages from this caller's calls; not sent");
                    return;
                }
                let Some(virtual_jid) = self.virtual_jids.get(&call.virtual_jid) else {
                    return;
                };
                let (from, id) = (virtual_jid.jid.clone(), self.ids.next("msg"));
                self.send(outbound::chat(from, to, body, id));
            }
            CallEvent::Connect(plan) => {
                self.start_connect(now, call_id, plan);
                self.process_signalling(now);
            }
            CallEvent::DiscoverCaller(reply) => {
                let Some(call) = self.calls.get(&call_id) else {
                    return;
                };
                let Some(virtual_jid) = self.virtual_jids.get(&call.virtual_jid) else {
                    return;
                };
                let (from, to) = (virtual_jid.jid.clone(), Jid::from(call.peer.clone()));
                self.push(RouterOutput::DiscoverCaller { from, to, reply });
            }
            CallEvent::Report {
                virtual_jid,
                to,
                body,
            } => {
                if self.messages_per_caller.try_take(&to, now) != Taken::Yes {
                    tracing::info!(caller = %to, "too many messages from this caller's calls; report not sent");
                    return;
                }
                let Some(virtual_jid) = self.virtual_jids.get(&virtual_jid) else {
                    return;
                };
                let (from, id) = (virtual_jid.jid.clone(), self.ids.next("msg"));
                self.send(outbound::chat(from, Jid::from(to), body, id));
            }
        }
    }

    /// The deadline from [`RouterCore::poll_timeout`] has come: the Jingle core's timers, and
    /// the next presence announcements.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.jingle.handle_timeout(now);
        self.process_signalling(now);
        if self.next_announcement.is_some_and(|due| due <= now) {
            self.announce_some(now);
        }
    }

    /// A reloaded config's routes, for new calls. Virtual JIDs that are gone say goodbye to
    /// their subscribers; the others announce themselves again (their name or features may
    /// have changed).
    pub fn handle_reload(&mut self, now: Instant, routes: RouteTable) {
        let gone: Vec<(String, Jid)> = self
            .virtual_jids
            .iter()
            .filter(|(name, _)| !routes.virtual_jids.contains_key(*name))
            .map(|(name, info)| (name.clone(), info.jid.clone()))
            .collect();
        for (name, jid) in gone {
            tracing::info!(%jid, "virtual JID removed");
            let subscribers: Vec<_> = self
                .subscribers
                .all()
                .into_iter()
                .filter(|(virtual_jid, _)| *virtual_jid == name)
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
        self.jingle.set_virtual_jids(routes.admission);
        self.virtual_jids = routes.virtual_jids;
        self.dialer.set_config(routes.outbound);
        self.admin = routes.admin;
        self.announce_presence(now);
    }

    /// The gateway stops: every call ends with a Jingle reason, then every subscriber gets
    /// unavailable presence.
    pub fn handle_shutdown(&mut self, now: Instant) {
        tracing::info!(calls = self.calls.len(), "shutting down: ending calls");
        self.jingle.handle_shutdown(now);
        self.process_signalling(now);
        self.say_goodbye();
    }

    /// Acts on every output the Jingle core has queued, in order.
    pub(super) fn process_signalling(&mut self, now: Instant) {
        while let Some(output) = self.jingle.poll_output() {
            match output {
                Output::StartCall(start) => {
                    let codec = start.offer.as_ref().map(|offer| offer.codec);
                    tracing::info!(
                        call_id = %start.call_id, virtual_jid = %start.virtual_jid, peer = %start.peer,
                        sid = %start.sid, codec = codec.map_or("(placing the call)", |c| c.name()),
                        "call started"
                    );
                    self.metrics.call_started(&start.virtual_jid);
                    if start.offer.is_some() {
                        self.accepting
                            .insert(start.sid.to_string(), (start.call_id, now));
                    }
                    let figures = SharedFigures::default();
                    let record = CallRecord {
                        peer: start.peer.clone(),
                        virtual_jid: start.virtual_jid.clone(),
                        codec,
                        started: now,
                        figures: figures.clone(),
                    };
                    self.calls.insert(start.call_id, record);
                    self.push(RouterOutput::StartCall { start, figures });
                }
                Output::RemoteCandidates {
                    call_id,
                    candidates,
                } => self.command_call(call_id, CallCommand::RemoteCandidates(candidates)),
                Output::IceRestart {
                    call_id,
                    ufrag,
                    pwd,
                    candidates,
                } => {
                    let command = CallCommand::RestartIce {
                        ufrag,
                        pwd,
                        candidates,
                    };
                    self.command_call(call_id, command);
                }
                Output::Answered { call_id, media } => {
                    tracing::info!(call_id = %call_id, codec = media.codec.name(), "answered");
                    self.attempt_answered(call_id, media);
                }
                Output::DialFailed { call_id, reason } => {
                    tracing::info!(call_id = %call_id, reason = %reason, "placed call not answered");
                    self.attempt_ended(now, call_id, reason);
                }
                Output::StopCall { call_id, reason } => {
                    tracing::info!(call_id = %call_id, reason = %reason, "call ended");
                    self.attempt_ended(now, call_id, reason);
                    self.caller_ended(call_id);
                    if let Some(call) = self.calls.remove(&call_id) {
                        self.metrics
                            .call_ended(&call.virtual_jid, reason.as_str(), true);
                        self.accepting.retain(|_, (id, _)| *id != call_id);
                        self.push(RouterOutput::StopCall { call_id, reason });
                    }
                }
                Output::CallNotStarted {
                    virtual_jid,
                    peer,
                    reason,
                } => {
                    // Anyone can cause these, as fast as the server relays: a few are logged,
                    // then one every few seconds with the count of the others.
                    if let Some(held_back) = self.refused_log.allow(now) {
                        tracing::info!(virtual_jid = %virtual_jid, peer = %peer, reason = %reason,
                            held_back, "call not started");
                    }
                    self.metrics
                        .call_ended(&virtual_jid, reason.as_str(), false);
                }
                other => {
                    if let Output::JingleIq { jingle, .. } = &other {
                        self.note_accept(now, jingle);
                    }
                    let id = match &other {
                        Output::Jmi { .. } => Some(self.ids.next("jmi")),
                        _ => None,
                    };
                    if let Some(stanza) = outbound::stanza_for(other, id) {
                        self.send(stanza);
                    }
                }
            }
        }
    }

    /// Times a call's setup when its session-accept goes out.
    fn note_accept(&mut self, now: Instant, jingle: &crate::protocol::jingle::Jingle) {
        if jingle.action == crate::protocol::jingle::Action::SessionAccept {
            if let Some((_, started)) = self.accepting.remove(&jingle.sid.0) {
                self.metrics.setup(now.saturating_duration_since(started));
            }
        }
    }

    /// Tells a running call `command`.
    pub(super) fn command_call(&mut self, call_id: CallId, command: CallCommand) {
        if self.calls.contains_key(&call_id) {
            self.push(RouterOutput::Call { call_id, command });
        }
    }

    /// Queues a stanza for the link in the lane its kind belongs to.
    pub(super) fn send(&mut self, stanza: Stanza) {
        let lane = outbound::lane_of(&stanza);
        self.push(RouterOutput::Stanza { stanza, lane });
    }

    pub(super) fn push(&mut self, output: RouterOutput) {
        self.outputs.push_back(output);
    }

    /// The bare virtual JID for `jid`, if it exists.
    pub(super) fn virtual_jid(&self, jid: &Jid) -> Option<&VirtualJidInfo> {
        if jid.domain() != self.domain.domain() {
            return None;
        }
        self.virtual_jids.get(jid.node()?.as_str())
    }
}
