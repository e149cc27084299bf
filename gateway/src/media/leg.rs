//! One call's media leg: ICE (controlled when answering, controlling when calling), then DTLS
//! on the selected pair, then SRTP. It is the
//! only place that touches webrtc-rs types per call, behind a small interface: candidates in and
//! out, plain RTP/RTCP in, RTP/RTCP out, and events.
//!
//! [`MediaLeg::next_event`] is cancel-safe: the call task selects on it together with its
//! commands and timers. The task ends with [`MediaLeg::close`], which releases the agent, the
//! DTLS connection and the sockets; a leg dropped without it (a panicking task) closes its
//! agent from `Drop`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dtls::conn::DTLSConn;
use tokio::sync::mpsc;
use tokio::time::Instant;
use webrtc_ice::agent::Agent;
use webrtc_ice::state::ConnectionState;
use webrtc_ice::udp_mux::{UDPMux, UDPMuxDefault, UDPMuxParams};
use webrtc_util::marshal::Marshal;
use webrtc_util::Conn;

use super::dtls::{handshake_config, is_dtls, srtp_keys, DtlsTransport};
use super::engine::MediaEngine;
use super::guard::{GuardedSocket, CREDIT_PER_CANDIDATE};
use super::ice::{new_agent, to_agent, AgentEvent, Sockets};
use super::reflexive;
use super::srtp::{Dropped, SrtpSession};
use super::stats::MediaStats;
use crate::media::MediaFailure;
use crate::protocol::ice_udp::{Candidate, CandidateType};
use crate::types::{DtlsRole, RemoteFingerprint};

/// Time for the DTLS handshake once ICE has connected.
const DTLS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first local candidates are waited for before answering without them.
const FIRST_CANDIDATE_WAIT: Duration = Duration::from_secs(2);
/// How long closing waits for candidate gathering to finish (an agent closed while gathering
/// leaks what the gathering still adds).
const GATHERING_WAIT: Duration = Duration::from_secs(6);
/// How often a secured leg checks its peer's consent.
const CONSENT_CHECK: Duration = Duration::from_secs(1);
/// Largest datagram read: what webrtc-ice itself accepts (a shorter buffer would make a large
/// datagram an error instead of a dropped packet).
const MAX_DATAGRAM: usize = 8192;

type ConnFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn Conn + Send + Sync>, String>> + Send>>;
type HandshakeFuture = Pin<Box<dyn Future<Output = Result<Box<DTLSConn>, String>> + Send>>;

/// Something the leg reports.
#[derive(Debug)]
pub enum LegEvent {
    /// A local candidate gathered after the answer: trickle it.
    LocalCandidate(Candidate),
    /// DTLS-SRTP is up: media can flow.
    Secured,
    /// An authenticated RTP packet, decrypted.
    Rtp(Bytes),
    /// An authenticated RTCP compound packet, decrypted.
    Rtcp(Bytes),
    /// The leg cannot go on.
    Failed(MediaFailure),
}

/// Which ICE role the leg takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    /// Answering a call: the caller's agent nominates.
    Controlled,
    /// Placing a call: we nominate.
    Controlling,
}

enum Phase {
    /// Gathering; the remote credentials are not known yet.
    Idle,
    Connecting {
        accept: ConnFuture,
    },
    Securing {
        conn: Arc<dyn Conn + Send + Sync>,
        handshake: HandshakeFuture,
        records: mpsc::Sender<Vec<u8>>,
    },
    Secured {
        conn: Arc<dyn Conn + Send + Sync>,
        dtls: Arc<DTLSConn>,
        /// Reads DTLS until it closes (see [`drain_dtls`]).
        drain: tokio::task::JoinHandle<()>,
        records: mpsc::Sender<Vec<u8>>,
        srtp: Box<SrtpSession>,
    },
    Closed,
}

/// One call's media transport.
pub struct MediaLeg {
    engine: Arc<MediaEngine>,
    agent: Arc<Agent>,
    agent_events: mpsc::UnboundedReceiver<AgentEvent>,
    role: IceRole,
    cancel_accept: Option<mpsc::Sender<()>>,
    phase: Phase,
    deadline: Instant,
    gathering_done: bool,
    was_connected: bool,
    remote_candidates: usize,
    dtls_client: bool,
    fingerprint: Option<RemoteFingerprint>,
    buf: Box<[u8; MAX_DATAGRAM]>,
    closed: bool,
    /// Our ufrag, by which the guard knows the call.
    ufrag: String,
    /// The mux of the call's own port (with `media.port_range`), closed with the leg, which
    /// frees the port.
    own_mux: Option<Arc<UDPMuxDefault>>,
    /// Asks the STUN servers for the socket's server-reflexive address.
    discovery: Option<tokio::task::JoinHandle<()>>,
    /// Our server-reflexive candidate, offered again after an ICE restart.
    reflexive: Option<Candidate>,
    /// The ICE pair in use, once selected.
    selected_pair: Option<String>,
    /// Remote candidates added, by [`CandidateType`] (as an index).
    remote_types: [usize; 4],
    /// When SRTP came up, and when consent is checked next.
    secured_at: Instant,
    consent_check: Instant,
}

impl MediaLeg {
    /// Creates the ICE agent in `role` and starts gathering. [`MediaLeg::connect`] starts
    /// connecting once the peer's credentials are known.
    pub async fn new(engine: Arc<MediaEngine>, role: IceRole) -> Result<Self, MediaFailure> {
        let (events, agent_events) = mpsc::unbounded_channel();
        let (mux, socket, own_mux) = match &engine.ice.sockets {
            Sockets::Shared { mux, socket } => (mux.clone(), socket.clone(), None),
            Sockets::Range(range) => {
                let socket = Arc::new(range.bind()?);
                let guarded = GuardedSocket::new(socket.clone(), engine.ice.guard.clone());
                let mux = UDPMuxDefault::new(UDPMuxParams::new(guarded));
                (mux.clone(), socket, Some(mux))
            }
        };
        let controlling = role == IceRole::Controlling;
        let agent = match new_agent(&engine.ice, mux, controlling, events.clone()).await {
            Ok(agent) => agent,
            Err(e) => {
                if let Some(mux) = own_mux {
                    let _ = mux.close().await;
                }
                return Err(MediaFailure::Agent(e.to_string()));
            }
        };
        engine.stats.legs_open.fetch_add(1, Ordering::Relaxed);
        MediaStats::bump(&engine.stats.legs_started);
        let (ufrag, pwd) = agent.get_local_user_credentials().await;
        engine.ice.guard.register(&ufrag, &pwd);
        let discovery = discover_reflexive(&engine, &socket, events);
        let mut leg = Self {
            deadline: Instant::now() + engine.ice_timeout,
            engine,
            agent,
            agent_events,
            role,
            cancel_accept: None,
            phase: Phase::Idle,
            gathering_done: false,
            was_connected: false,
            remote_candidates: 0,
            dtls_client: false,
            fingerprint: None,
            buf: Box::new([0; MAX_DATAGRAM]),
            closed: false,
            ufrag,
            own_mux,
            discovery,
            reflexive: None,
            selected_pair: None,
            remote_types: [0; 4],
            secured_at: Instant::now(),
            consent_check: Instant::now(),
        };
        if let Err(e) = leg.agent.gather_candidates() {
            leg.gathering_done = true;
            leg.close().await;
            return Err(MediaFailure::Agent(e.to_string()));
        }
        Ok(leg)
    }

    /// Starts connecting to the peer with its ICE credentials; DTLS follows in `dtls_role`,
    /// pinned to the peer's `fingerprint`. The ICE timeout counts from here.
    pub fn connect(
        &mut self,
        remote_ufrag: &str,
        remote_pwd: &str,
        fingerprint: RemoteFingerprint,
        dtls_role: DtlsRole,
    ) {
        let (cancel_tx, cancel_rx) = mpsc::channel(1);
        let agent = self.agent.clone();
        let (ufrag, pwd) = (remote_ufrag.to_string(), remote_pwd.to_string());
        let controlling = self.role == IceRole::Controlling;
        let connect = Box::pin(async move {
            let conn: Result<Arc<dyn Conn + Send + Sync>, _> = if controlling {
                agent.dial(cancel_rx, ufrag, pwd).await.map(|c| c as _)
            } else {
                agent.accept(cancel_rx, ufrag, pwd).await.map(|c| c as _)
            };
            conn.map_err(|e| e.to_string())
        }) as ConnFuture;
        self.cancel_accept = Some(cancel_tx);
        self.fingerprint = Some(fingerprint);
        self.dtls_client = dtls_role == DtlsRole::Client;
        self.deadline = Instant::now() + self.engine.ice_timeout;
        self.phase = Phase::Connecting { accept: connect };
    }

    /// Our ICE credentials. (The future holds no borrow of the leg, which is not `Sync`.)
    pub fn local_credentials(&self) -> impl Future<Output = (String, String)> + Send + 'static {
        let agent = self.agent.clone();
        async move { agent.get_local_user_credentials().await }
    }

    /// The candidates gathered within a short wait (host candidates come at once), for the answer.
    pub async fn initial_candidates(&mut self) -> Vec<Candidate> {
        let mut candidates = Vec::new();
        let wait = tokio::time::sleep(FIRST_CANDIDATE_WAIT);
        tokio::pin!(wait);
        while !self.gathering_done {
            tokio::select! {
                _ = &mut wait => break,
                event = self.agent_events.recv() => match event {
                    Some(AgentEvent::Candidate(Some(candidate))) => {
                        candidates.push(self.local_candidate(candidate));
                        // Host candidates come together; later ones (STUN, TURN) trickle.
                        if self.agent_events.is_empty() { break; }
                    }
                    Some(AgentEvent::Candidate(None)) | None => self.gathering_done = true,
                    Some(AgentEvent::State(state)) => tracing::debug!(%state, "ICE state"),
                    Some(AgentEvent::Selected(pair)) => self.selected(pair),
                },
            }
        }
        // After an ICE restart: our server-reflexive address has not changed.
        if let Some(reflexive) = &self.reflexive {
            if !candidates.contains(reflexive) {
                candidates.push(reflexive.clone());
            }
        }
        candidates
    }

    /// A local candidate on its way out (a server-reflexive one is kept for restarts).
    fn local_candidate(&mut self, candidate: Candidate) -> Candidate {
        if candidate.candidate_type == CandidateType::ServerReflexive {
            self.reflexive = Some(candidate.clone());
        }
        candidate
    }

    /// Whether gathering is over (with or without candidates).
    pub fn gathering_complete(&self) -> bool {
        self.gathering_done
    }

    /// Adds the caller's candidates that the policy admits, up to the call's budget (over its
    /// whole life, ICE restarts included).
    pub fn add_remote_candidates(&mut self, candidates: &[Candidate]) {
        for candidate in candidates {
            if self.remote_candidates >= self.engine.max_remote_candidates {
                MediaStats::bump(&self.engine.stats.candidates_refused);
                tracing::debug!(%candidate, "remote candidate over the per-call limit");
                continue;
            }
            if let Err(why) = self.engine.ice.policy.admits(candidate) {
                MediaStats::bump(&self.engine.stats.candidates_refused);
                tracing::debug!(%candidate, why, "remote candidate refused");
                continue;
            }
            match to_agent(candidate) {
                Ok(remote) => match self.agent.add_remote_candidate(&remote) {
                    Ok(()) => {
                        self.remote_candidates += 1;
                        self.remote_types[candidate.candidate_type as usize] += 1;
                        self.engine
                            .ice
                            .guard
                            .credit(&self.ufrag, CREDIT_PER_CANDIDATE);
                    }
                    Err(e) => tracing::debug!(%candidate, error = %e, "remote candidate not added"),
                },
                Err(e) => tracing::debug!(%candidate, error = %e, "remote candidate unreadable"),
            }
        }
    }

    /// ICE restart: new local credentials (returned) and gathering again. The peer's new
    /// credentials follow with [`MediaLeg::set_remote_credentials`]. DTLS and SRTP carry on over
    /// the new pair.
    pub async fn restart(&mut self) -> Result<(String, String), MediaFailure> {
        // webrtc-ice refuses a restart while gathering: let it finish (its candidates are of the
        // old generation and are dropped).
        self.wait_for_gathering().await;
        if !self.gathering_done {
            return Err(MediaFailure::Restart("gathering did not finish".into()));
        }
        self.agent
            .restart(String::new(), String::new())
            .await
            .map_err(|e| MediaFailure::Restart(e.to_string()))?;
        self.gathering_done = false;
        self.agent
            .gather_candidates()
            .map_err(|e| MediaFailure::Restart(e.to_string()))?;
        // The remote-candidate budget is the call's, not the generation's: restarts do not
        // renew it, nor what the guard lets it send to addresses that did not answer.
        let credentials = self.agent.get_local_user_credentials().await;
        self.engine
            .ice
            .guard
            .rename(&self.ufrag, &credentials.0, &credentials.1);
        self.ufrag = credentials.0.clone();
        Ok(credentials)
    }

    /// The peer's ICE credentials after a restart.
    pub async fn set_remote_credentials(
        &mut self,
        ufrag: &str,
        pwd: &str,
    ) -> Result<(), MediaFailure> {
        self.agent
            .set_remote_credentials(ufrag.to_string(), pwd.to_string())
            .await
            .map_err(|e| MediaFailure::Restart(e.to_string()))
    }

    /// Whether SRTP is up.
    pub fn is_secured(&self) -> bool {
        matches!(self.phase, Phase::Secured { .. })
    }

    /// The next thing that happens on the leg. Cancel-safe.
    pub async fn next_event(&mut self) -> LegEvent {
        loop {
            let Self {
                agent_events,
                phase,
                buf,
                deadline,
                consent_check,
                ..
            } = self;
            let step = match phase {
                Phase::Idle => tokio::select! {
                    event = agent_events.recv() => Step::Agent(event),
                },
                Phase::Connecting { accept } => tokio::select! {
                    event = agent_events.recv() => Step::Agent(event),
                    result = accept => Step::Connected(result),
                    _ = tokio::time::sleep_until(*deadline) => Step::Failed(MediaFailure::NoPair(Some("timeout".into()))),
                },
                Phase::Securing {
                    conn,
                    handshake,
                    records,
                } => tokio::select! {
                    event = agent_events.recv() => Step::Agent(event),
                    result = handshake => Step::Handshaken(result),
                    received = conn.recv(&mut buf[..]) => match received {
                        Ok(n) => {
                            if is_dtls(&buf[..n]) {
                                let _ = records.try_send(buf[..n].to_vec());
                            }
                            Step::Nothing
                        }
                        Err(_) => Step::Failed(MediaFailure::Socket),
                    },
                    _ = tokio::time::sleep_until(*deadline) => Step::Failed(MediaFailure::HandshakeTimeout),
                },
                Phase::Secured {
                    conn,
                    records,
                    srtp,
                    ..
                } => tokio::select! {
                    event = agent_events.recv() => Step::Agent(event),
                    received = conn.recv(&mut buf[..]) => match received {
                        Ok(n) => Step::Datagram(classify(&buf[..n], records, srtp, &self.engine.stats)),
                        Err(_) => Step::Failed(MediaFailure::ConnectionLost),
                    },
                    _ = tokio::time::sleep_until(*consent_check) => Step::CheckConsent,
                },
                Phase::Closed => return std::future::pending().await,
            };
            match step {
                Step::Nothing => {}
                Step::CheckConsent => {
                    if let Some(failed) = self.check_consent() {
                        return failed;
                    }
                }
                Step::Datagram(Some(event)) => return event,
                Step::Datagram(None) => {}
                Step::Failed(reason) => return self.fail(reason),
                Step::Agent(None) => return self.fail(MediaFailure::AgentGone),
                Step::Agent(Some(AgentEvent::Candidate(Some(candidate)))) => {
                    return LegEvent::LocalCandidate(self.local_candidate(candidate))
                }
                Step::Agent(Some(AgentEvent::Candidate(None))) => self.gathering_done = true,
                Step::Agent(Some(AgentEvent::Selected(pair))) => self.selected(pair),
                Step::Agent(Some(AgentEvent::State(state))) => {
                    tracing::debug!(%state, "ICE state");
                    match state {
                        ConnectionState::Connected => self.was_connected = true,
                        ConnectionState::Failed => {
                            return self.fail(if self.was_connected {
                                MediaFailure::ConnectionLost
                            } else {
                                MediaFailure::NoPair(None)
                            })
                        }
                        _ => {}
                    }
                }
                Step::Connected(Ok(conn)) => {
                    if let Some(failed) = self.start_dtls(conn) {
                        return failed;
                    }
                }
                Step::Connected(Err(e)) => {
                    tracing::info!(error = %e, "ICE did not connect");
                    return self.fail(MediaFailure::NoPair(Some(e)));
                }
                Step::Handshaken(Ok(dtls)) => match self.start_srtp(dtls).await {
                    Ok(()) => return LegEvent::Secured,
                    Err(e) => {
                        tracing::info!(error = %e, "SRTP could not start");
                        return self.fail(MediaFailure::Srtp(e));
                    }
                },
                Step::Handshaken(Err(e)) => {
                    tracing::info!(error = %e, "DTLS handshake failed");
                    return self.fail(MediaFailure::Handshake(e));
                }
            }
        }
    }

    /// The leg cannot go on: its futures are dropped (a finished one must not be polled again)
    /// and it waits for [`MediaLeg::close`].
    fn fail(&mut self, failure: MediaFailure) -> LegEvent {
        self.phase = Phase::Closed;
        LegEvent::Failed(failure)
    }

    /// The agent uses `pair` (the peer may send from any of its addresses that proved it is
    /// the peer: see the guard).
    fn selected(&mut self, pair: String) {
        tracing::debug!(%pair, "selected pair");
        self.selected_pair = Some(pair);
    }

    /// The remote candidates added so far, by type (`host`, `srflx`, `prflx`, `relay`); types
    /// with none are left out.
    pub fn remote_candidate_types(&self) -> Vec<(&'static str, usize)> {
        CandidateType::ALL
            .iter()
            .filter(|kind| self.remote_types[**kind as usize] > 0)
            .map(|kind| (kind.as_str(), self.remote_types[*kind as usize]))
            .collect()
    }

    /// The ICE pair in use (candidate types and addresses, local first), once one is selected.
    pub fn selected_pair(&self) -> Option<&str> {
        self.selected_pair.as_deref()
    }

    /// Starts the DTLS handshake on the connected pair (a failure, if it cannot start).
    fn start_dtls(&mut self, conn: Arc<dyn Conn + Send + Sync>) -> Option<LegEvent> {
        tracing::debug!(remote = ?conn.remote_addr(), "ICE connected");
        self.was_connected = true;
        let (transport, records) = DtlsTransport::new(conn.clone());
        let Some(fingerprint) = &self.fingerprint else {
            return Some(self.fail(MediaFailure::NoFingerprint));
        };
        let config = handshake_config(&self.engine.certificate, fingerprint);
        let is_client = self.dtls_client;
        let handshake = Box::pin(async move {
            DTLSConn::new(transport, config, is_client, None)
                .await
                .map(Box::new)
                .map_err(|e| e.to_string())
        }) as HandshakeFuture;
        self.deadline = Instant::now() + DTLS_TIMEOUT;
        self.phase = Phase::Securing {
            conn,
            handshake,
            records,
        };
        None
    }

    /// RFC 7675: consent is the last response to our checks on the selected pair (the guard
    /// sees them); media alone does not keep the call. A failure when it is older than
    /// `media.consent_timeout`.
    fn check_consent(&mut self) -> Option<LegEvent> {
        self.consent_check = Instant::now() + CONSENT_CHECK;
        let Phase::Secured { conn, .. } = &self.phase else {
            return None;
        };
        let remote = conn.remote_addr()?;
        let age = self
            .engine
            .ice
            .guard
            .consent_age(remote)
            .unwrap_or_else(|| self.secured_at.elapsed());
        if age <= self.engine.ice.consent_timeout {
            return None;
        }
        tracing::info!(%remote, ?age, "the peer stopped answering checks: consent lost");
        Some(self.fail(MediaFailure::ConsentLost))
    }

    async fn start_srtp(&mut self, dtls: Box<DTLSConn>) -> Result<(), String> {
        let (profile, keys) = srtp_keys(&dtls, self.dtls_client).await?;
        let srtp = SrtpSession::new(profile, &keys).map_err(|e| e.to_string())?;
        tracing::debug!(?profile, client = self.dtls_client, "DTLS-SRTP up");
        let Phase::Securing { conn, records, .. } =
            std::mem::replace(&mut self.phase, Phase::Closed)
        else {
            return Err("not in the DTLS phase".into());
        };
        let dtls: Arc<DTLSConn> = Arc::from(dtls);
        self.secured_at = Instant::now();
        self.consent_check = self.secured_at + CONSENT_CHECK;
        self.phase = Phase::Secured {
            conn,
            drain: tokio::spawn(drain_dtls(dtls.clone())),
            dtls,
            records,
            srtp: Box::new(srtp),
        };
        Ok(())
    }

    /// Sends an RTP packet (header and payload), protected with SRTP; returns the protected
    /// packet as sent.
    pub async fn send_rtp(
        &mut self,
        header: &rtp::header::Header,
        payload: &[u8],
    ) -> Option<Bytes> {
        let Phase::Secured { conn, srtp, .. } = &mut self.phase else {
            return None;
        };
        let header_len = header.marshal_to(&mut self.buf[..]).ok()?;
        let end = header_len
            .checked_add(payload.len())
            .filter(|end| *end <= MAX_DATAGRAM)?;
        self.buf[header_len..end].copy_from_slice(payload);
        let packet = srtp.protect_rtp(&self.buf[..end], header)?;
        if conn.send(&packet).await.is_ok() {
            MediaStats::bump(&self.engine.stats.rtp_out);
            MediaStats::add(&self.engine.stats.rtp_bytes_out, packet.len() as u64);
        }
        Some(packet)
    }

    /// Sends `datagram` as it is on the selected pair (no protection), once connected.
    pub async fn send_datagram(&mut self, datagram: &[u8]) {
        let conn = match &self.phase {
            Phase::Securing { conn, .. } | Phase::Secured { conn, .. } => conn,
            _ => return,
        };
        let _ = conn.send(datagram).await;
    }

    /// Sends a plain RTCP compound packet, protected with SRTCP.
    pub async fn send_rtcp(&mut self, plain: &[u8]) {
        let Phase::Secured { conn, srtp, .. } = &mut self.phase else {
            return;
        };
        if let Some(packet) = srtp.protect_rtcp(plain) {
            let _ = conn.send(&packet).await;
        }
    }

    /// Releases everything: stops connecting, closes DTLS, waits for gathering to finish, closes
    /// the agent (which frees its sockets or its place on the shared port).
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        if let Some(cancel) = self.cancel_accept.take() {
            let _ = cancel.try_send(());
        }
        if let Phase::Secured { dtls, drain, .. } =
            std::mem::replace(&mut self.phase, Phase::Closed)
        {
            drain.abort();
            let _ = tokio::time::timeout(Duration::from_millis(200), dtls.close()).await;
        }
        self.wait_for_gathering().await;
        if let Err(e) = self.agent.close().await {
            tracing::debug!(error = %e, "closing the ICE agent");
        }
        if let Some(discovery) = self.discovery.take() {
            discovery.abort();
        }
        if let Some(mux) = self.own_mux.take() {
            let _ = mux.close().await;
        }
        self.engine.ice.guard.forget(&self.ufrag);
        self.closed = true;
        self.engine.stats.legs_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Waits (up to [`GATHERING_WAIT`]) until candidate gathering is complete.
    async fn wait_for_gathering(&mut self) {
        let wait = tokio::time::sleep(GATHERING_WAIT);
        tokio::pin!(wait);
        while !self.gathering_done {
            tokio::select! {
                _ = &mut wait => break,
                event = self.agent_events.recv() => match event {
                    Some(AgentEvent::Candidate(None)) | None => self.gathering_done = true,
                    Some(AgentEvent::Candidate(Some(candidate))) => {
                        self.local_candidate(candidate);
                    }
                    Some(AgentEvent::Selected(pair)) => self.selected(pair),
                    Some(AgentEvent::State(_)) => {}
                },
            }
        }
    }
}

impl Drop for MediaLeg {
    /// A leg dropped without [`MediaLeg::close`] (its task panicked) still frees its agent.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Phase::Secured { drain, .. } = &self.phase {
            drain.abort();
        }
        self.engine.stats.legs_open.fetch_sub(1, Ordering::Relaxed);
        if let Some(cancel) = self.cancel_accept.take() {
            let _ = cancel.try_send(());
        }
        self.engine.ice.guard.forget(&self.ufrag);
        let agent = self.agent.clone();
        if let Some(discovery) = self.discovery.take() {
            discovery.abort();
        }
        let own_mux = self.own_mux.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = agent.close().await;
                if let Some(mux) = own_mux {
                    let _ = mux.close().await;
                }
            });
        }
    }
}

/// Starts asking the STUN servers for the server-reflexive address of the call's `socket`
/// (shared or its own); the candidate comes on `events` like the agent's.
fn discover_reflexive(
    engine: &MediaEngine,
    socket: &Arc<tokio::net::UdpSocket>,
    events: mpsc::UnboundedSender<AgentEvent>,
) -> Option<tokio::task::JoinHandle<()>> {
    if engine.ice.stun_servers.is_empty() {
        return None;
    }
    let port = socket.local_addr().ok()?.port();
    let base = SocketAddr::new(engine.ice.local_address, port);
    let offered = SocketAddr::new(
        engine
            .ice
            .public_address
            .unwrap_or(engine.ice.local_address),
        port,
    );
    let (socket, guard) = (socket.clone(), engine.ice.guard.clone());
    let servers = engine.ice.stun_servers.clone();
    Some(tokio::spawn(async move {
        if let Some(candidate) = reflexive::discover(socket, guard, servers, base, offered).await {
            let _ = events.send(AgentEvent::Candidate(Some(candidate)));
        }
    }))
}

/// Reads the DTLS connection until it closes, so that alerts (close_notify) are processed;
/// nothing is sent as application data. A task of its own, idle between records: a read begun
/// afresh beside every packet would take and release the connection's lock each time.
async fn drain_dtls(dtls: Arc<DTLSConn>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while dtls.read(&mut buf, None).await.is_ok() {}
    tracing::debug!("DTLS closed");
}

enum Step {
    Nothing,
    CheckConsent,
    Agent(Option<AgentEvent>),
    Connected(Result<Arc<dyn Conn + Send + Sync>, String>),
    Handshaken(Result<Box<DTLSConn>, String>),
    Datagram(Option<LegEvent>),
    Failed(MediaFailure),
}

/// Sorts a received datagram (RFC 7983): DTLS records go to DTLS, SRTP and SRTCP are
/// authenticated and decrypted, anything else is dropped and counted.
fn classify(
    packet: &[u8],
    records: &mpsc::Sender<Vec<u8>>,
    srtp: &mut SrtpSession,
    stats: &MediaStats,
) -> Option<LegEvent> {
    match packet.first() {
        Some(20..=63) => {
            let _ = records.try_send(packet.to_vec());
            None
        }
        Some(128..=191) if packet.len() >= 2 => {
            let is_rtcp = matches!(packet[1], 192..=223);
            let result = if is_rtcp {
                srtp.unprotect_rtcp(packet).map(LegEvent::Rtcp)
            } else {
                srtp.unprotect_rtp(packet).map(LegEvent::Rtp)
            };
            match result {
                Ok(event) => {
                    if is_rtcp {
                        MediaStats::bump(&stats.rtcp_in);
                    } else {
                        MediaStats::bump(&stats.rtp_in);
                        MediaStats::add(&stats.rtp_bytes_in, packet.len() as u64);
                    }
                    Some(event)
                }
                Err(Dropped::Replay) => {
                    MediaStats::bump(&stats.replays);
                    None
                }
                Err(Dropped::Authentication) | Err(Dropped::UnknownSource) => {
                    MediaStats::bump(&stats.auth_failures);
                    None
                }
            }
        }
        _ => {
            MediaStats::bump(&stats.garbage);
            None
        }
    }
}
