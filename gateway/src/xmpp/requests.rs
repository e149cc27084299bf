//! Stanzas from tasks other than the router (voicemail delivery): an [`XmppHandle`] queues
//! messages and IQ requests; the router sends them on the component link and hands each IQ's
//! answer back. A request whose answer never comes times out at the requester.

use std::collections::HashMap;
use std::time::Duration;

use jid::Jid;
use minidom::Element;
use tokio::sync::{mpsc, oneshot, watch};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::Message;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::StanzaError;

/// Why an IQ request got no result.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The peer answered with an error.
    #[error("{}", describe(.0))]
    Refused(Box<StanzaError>),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The gateway is stopping.
    #[error("the gateway is stopping")]
    Stopped,
}

fn describe(error: &StanzaError) -> String {
    let element = Element::from(error.clone());
    let condition = element
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "undefined-condition".into());
    let text = error
        .texts
        .values()
        .next()
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    format!("<{condition}/>{text}")
}

/// What the router is asked to do.
#[derive(Debug)]
pub enum Request {
    /// Send a message.
    Message(Box<Message>),
    /// Send the answer to an IQ request that came earlier (one answered after its handler
    /// returned).
    Reply(Box<Iq>),
    /// Send an IQ get or set and hand back its answer.
    Iq {
        /// Sender.
        from: Jid,
        /// Recipient.
        to: Jid,
        /// `get` (else `set`).
        get: bool,
        /// The payload.
        payload: Element,
        /// Where the answer goes: the result's payload, or the error.
        answer: AnswerSender,
    },
}

/// Where an IQ's answer goes: the result's payload, or the error.
type AnswerSender = oneshot::Sender<Result<Option<Element>, StanzaError>>;

/// Lets a task send stanzas through the router.
#[derive(Debug, Clone)]
pub struct XmppHandle {
    requests: mpsc::UnboundedSender<Request>,
    online: watch::Receiver<bool>,
}

impl XmppHandle {
    /// A handle and the router's ends: the requests, and the component's online state to set.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Request>, watch::Sender<bool>) {
        let (requests, receiver) = mpsc::unbounded_channel();
        let (online_tx, online) = watch::channel(false);
        (Self { requests, online }, receiver, online_tx)
    }

    /// Waits until the component is connected; `false` when the gateway is stopping.
    pub async fn wait_online(&mut self) -> bool {
        self.online.wait_for(|online| *online).await.is_ok()
    }

    /// Sends the answer to an IQ request that came earlier.
    pub fn reply(&self, answer: Iq) -> Result<(), RequestError> {
        self.requests
            .send(Request::Reply(Box::new(answer)))
            .map_err(|_| RequestError::Stopped)
    }

    /// Sends a message.
    pub fn send_message(&self, message: Message) -> Result<(), RequestError> {
        self.requests
            .send(Request::Message(Box::new(message)))
            .map_err(|_| RequestError::Stopped)
    }

    /// Sends an IQ request and waits up to `timeout` for its answer.
    pub async fn iq(
        &self,
        from: Jid,
        to: Jid,
        get: bool,
        payload: Element,
        timeout: Duration,
    ) -> Result<Option<Element>, RequestError> {
        let (answer, receive) = oneshot::channel();
        self.requests
            .send(Request::Iq {
                from,
                to,
                get,
                payload,
                answer,
            })
            .map_err(|_| RequestError::Stopped)?;
        match tokio::time::timeout(timeout, receive).await {
            Err(_) => Err(RequestError::Timeout(timeout)),
            Ok(Err(_)) => Err(RequestError::Stopped),
            Ok(Ok(Ok(payload))) => Ok(payload),
            Ok(Ok(Err(error))) => Err(RequestError::Refused(Box::new(error))),
        }
    }
}

/// The router's record of IQ requests waiting for answers.
#[derive(Debug, Default)]
pub struct PendingRequests {
    waiting: HashMap<String, (Jid, AnswerSender)>,
}

impl PendingRequests {
    /// Turns a request into the stanza to send, remembering where its answer goes; an IQ
    /// gets the id `id`.
    pub fn stanza(&mut self, request: Request, id: String) -> Stanza {
        match request {
            Request::Message(message) => Stanza::Message(*message),
            Request::Reply(iq) => Stanza::Iq(*iq),
            Request::Iq {
                from,
                to,
                get,
                payload,
                answer,
            } => {
                // Requesters that gave up (timed out) are forgotten here.
                self.waiting.retain(|_, (_, answer)| !answer.is_closed());
                self.waiting.insert(id.clone(), (to.clone(), answer));
                let (from, to) = (Some(from), Some(to));
                Stanza::Iq(if get {
                    Iq::Get {
                        from,
                        to,
                        id,
                        payload,
                    }
                } else {
                    Iq::Set {
                        from,
                        to,
                        id,
                        payload,
                    }
                })
            }
        }
    }

    /// Hands an IQ answer to its requester; `false` when it answers none of ours.
    pub fn answer(
        &mut self,
        from: Option<&Jid>,
        id: &str,
        answer: Result<Option<Element>, StanzaError>,
    ) -> bool {
        let Some((to, _)) = self.waiting.get(id) else {
            return false;
        };
        // Only the entity asked may answer (a server answers for its bare domain too).
        if from.is_some_and(|from| from != to) {
            return false;
        }
        if let Some((_, requester)) = self.waiting.remove(id) {
            let _ = requester.send(answer);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

    #[tokio::test]
    async fn answers_reach_their_requester_and_strangers_are_ignored() {
        let (handle, mut requests, _online) = XmppHandle::new();
        let mut pending = PendingRequests::default();
        let server = Jid::new("upload.example").unwrap();
        let me = Jid::new("vm@gw.example").unwrap();
        let ask = {
            let handle = handle.clone();
            let (me, server) = (me.clone(), server.clone());
            tokio::spawn(async move {
                let query = Element::builder("query", "urn:x").build();
                handle
                    .iq(me, server, true, query, Duration::from_secs(5))
                    .await
            })
        };
        let Stanza::Iq(Iq::Get { id, to, .. }) =
            pending.stanza(requests.recv().await.unwrap(), "req-1".into())
        else {
            panic!("not an IQ get");
        };
        assert_eq!(to, Some(server.clone()));
        let stranger = Jid::new("mallory@evil.example").unwrap();
        assert!(!pending.answer(Some(&stranger), &id, Ok(None)));
        assert!(!pending.answer(Some(&server), "other-id", Ok(None)));
        let error = StanzaError::new(ErrorType::Cancel, DefinedCondition::Forbidden, "en", "no");
        assert!(pending.answer(Some(&server), &id, Err(error)));
        let result = ask.await.unwrap();
        assert_eq!(
            result.unwrap_err().to_string(),
            "<forbidden/>: no",
            "the error names its condition"
        );
        let timed_out = handle
            .iq(
                me,
                server,
                true,
                Element::builder("q", "urn:x").build(),
                Duration::from_millis(10),
            )
            .await;
        assert!(matches!(timed_out, Err(RequestError::Timeout(_))));
    }
}
