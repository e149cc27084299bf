//! The generator's XMPP side: one XEP-0114 component with a domain of its own on the server,
//! so thousands of callers (`caller17@load.localhost/load`) need no accounts. Jingle IQs from
//! the gateway are acknowledged and routed to their call by sid; a `session-initiate` for a sid
//! nobody here knows is a call for the generator to answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jid::Jid;
use jingle_gateway::protocol::jingle::{Action, Jingle};
use jingle_gateway::xmpp::link::{run_link, LinkConfig, LinkEvent};
use jingle_gateway::xmpp::outbox::{self, Lane, Outbox};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::Stanza;

/// A call the gateway places to a JID of ours: (from, to, its session-initiate).
pub type Incoming = (Jid, Jid, Jingle);

/// The component link and who waits for what on it.
pub struct Signalling {
    /// Our component domain.
    pub domain: String,
    out: Outbox,
    calls: Mutex<HashMap<String, mpsc::UnboundedSender<Jingle>>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Result<(), String>>>>,
    next_id: AtomicU64,
    shutdown: CancellationToken,
}

impl Signalling {
    /// Attaches to the server's component port as `domain`; returns the link and the calls
    /// placed to us.
    pub async fn connect(
        host: &str,
        port: u16,
        domain: &str,
        secret: &str,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Incoming>), String> {
        let (events_tx, mut events) = mpsc::channel(4096);
        // Room for every call of a ramp's IQs at once: the generator must not drop its own.
        let (out, outbound) = outbox::with_capacity(1 << 16, 16);
        let shutdown = CancellationToken::new();
        let config = LinkConfig {
            host: host.into(),
            port,
            domain: domain.into(),
            secret: secret.into(),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(2),
            keepalive: Duration::from_secs(60),
            timeout: Duration::from_secs(20),
        };
        tokio::spawn(run_link(config, events_tx, outbound, shutdown.clone()));
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(LinkEvent::Connected)) => {}
            other => return Err(format!("the component did not attach: {other:?}")),
        }
        let signalling = Arc::new(Self {
            domain: domain.into(),
            out,
            calls: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            shutdown,
        });
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let reader = signalling.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let LinkEvent::Stanza(stanza) = event {
                    reader.receive(*stanza, &incoming_tx).await;
                }
            }
        });
        Ok((signalling, incoming))
    }

    /// Routes the Jingle stanzas of session `sid` to the receiver returned.
    pub fn register(&self, sid: &str) -> mpsc::UnboundedReceiver<Jingle> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(sid.to_string(), tx);
        }
        rx
    }

    /// Stops routing session `sid`.
    pub fn unregister(&self, sid: &str) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.remove(sid);
        }
    }

    /// Sends `jingle` in an IQ set and waits for its result (or the error's condition).
    pub async fn iq(&self, from: &Jid, to: &Jid, jingle: Jingle) -> Result<(), String> {
        let id = format!("load{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id.clone(), tx);
        }
        let iq = Iq::Set {
            from: Some(from.clone()),
            to: Some(to.clone()),
            id: id.clone(),
            payload: jingle.to_element(),
        };
        self.out
            .send(Stanza::Iq(iq), Lane::Signalling)
            .map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(Duration::from_secs(10), rx).await;
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&id);
        }
        match answer {
            Ok(Ok(result)) => result,
            _ => Err(format!("no answer to {}", id)),
        }
    }

    /// Sends `jingle` without waiting for its result (trickled candidates, hang-ups).
    pub async fn send(&self, from: &Jid, to: &Jid, jingle: Jingle) {
        let id = format!("load{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let iq = Iq::Set {
            from: Some(from.clone()),
            to: Some(to.clone()),
            id,
            payload: jingle.to_element(),
        };
        let _ = self.out.send(Stanza::Iq(iq), Lane::Signalling);
    }

    /// Detaches from the server.
    pub fn close(&self) {
        self.shutdown.cancel();
    }

    async fn receive(&self, stanza: Stanza, incoming: &mpsc::UnboundedSender<Incoming>) {
        let Stanza::Iq(iq) = stanza else {
            return;
        };
        match iq {
            Iq::Set {
                from: Some(from),
                to: Some(to),
                id,
                payload,
            } => {
                let result = Iq::Result {
                    from: Some(to.clone()),
                    to: Some(from.clone()),
                    id,
                    payload: None,
                };
                let _ = self.out.send(Stanza::Iq(result), Lane::Signalling);
                let Ok(jingle) = Jingle::parse(&payload) else {
                    return;
                };
                let route = self
                    .calls
                    .lock()
                    .ok()
                    .and_then(|calls| calls.get(&jingle.sid.0).cloned());
                match route {
                    Some(call) => {
                        let _ = call.send(jingle);
                    }
                    None if jingle.action == Action::SessionInitiate => {
                        let _ = incoming.send((from, to, jingle));
                    }
                    None => {}
                }
            }
            Iq::Result { id, .. } => self.answer(&id, Ok(())),
            Iq::Error { id, error, .. } => {
                self.answer(&id, Err(format!("{:?}", error.defined_condition)));
            }
            _ => {}
        }
    }

    fn answer(&self, id: &str, result: Result<(), String>) {
        let waiting = self.pending.lock().ok().and_then(|mut p| p.remove(id));
        if let Some(waiting) = waiting {
            let _ = waiting.send(result);
        }
    }
}
