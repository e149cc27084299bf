//! The queue of stanzas waiting for the component link, in two lanes: signalling (IQs, call
//! signalling, the gateway's own messages) always leaves before bulk (presence, chat replies,
//! bounces), and each lane has its own bound, so a flood of presence cannot push a call's
//! `session-accept` out of the queue. Senders never wait: a full lane refuses the stanza.

use tokio::sync::mpsc;
use xmpp_parsers::stanza::Stanza;

/// Stanzas that may wait in the signalling lane.
pub const SIGNALLING_CAPACITY: usize = 4096;
/// Stanzas that may wait in the bulk lane.
pub const BULK_CAPACITY: usize = 1024;

/// Which lane a stanza waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// IQs, Jingle Message Initiation, receipts and the gateway's own messages: never dropped for
    /// bulk traffic.
    Signalling,
    /// Presence, replies to chat and error bounces: what a flood from outside can cause.
    Bulk,
}

impl Lane {
    /// Both lanes.
    pub const ALL: [Lane; 2] = [Self::Signalling, Self::Bulk];

    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signalling => "signalling",
            Self::Bulk => "bulk",
        }
    }
}

/// Why a stanza was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotQueued {
    /// Its lane is full: the link is not keeping up.
    #[error("the {} lane is full", .0.as_str())]
    Full(Lane),
    /// The link has stopped.
    #[error("the component link has stopped")]
    Closed,
}

/// The sending side (the router's).
#[derive(Debug, Clone)]
pub struct Outbox {
    signalling: mpsc::Sender<Stanza>,
    bulk: mpsc::Sender<Stanza>,
}

/// The receiving side (the link's).
#[derive(Debug)]
pub struct OutboxReceiver {
    signalling: mpsc::Receiver<Stanza>,
    bulk: mpsc::Receiver<Stanza>,
}

/// A new outbox with the default capacities.
pub fn outbox() -> (Outbox, OutboxReceiver) {
    with_capacity(SIGNALLING_CAPACITY, BULK_CAPACITY)
}

/// A new outbox whose lanes hold `signalling` and `bulk` stanzas.
pub fn with_capacity(signalling: usize, bulk: usize) -> (Outbox, OutboxReceiver) {
    let (signalling_tx, signalling_rx) = mpsc::channel(signalling);
    let (bulk_tx, bulk_rx) = mpsc::channel(bulk);
    (
        Outbox {
            signalling: signalling_tx,
            bulk: bulk_tx,
        },
        OutboxReceiver {
            signalling: signalling_rx,
            bulk: bulk_rx,
        },
    )
}

impl Outbox {
    /// Queues `stanza` in `lane` without waiting.
    pub fn send(&self, stanza: Stanza, lane: Lane) -> Result<(), NotQueued> {
        let sender = match lane {
            Lane::Signalling => &self.signalling,
            Lane::Bulk => &self.bulk,
        };
        sender.try_send(stanza).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NotQueued::Full(lane),
            mpsc::error::TrySendError::Closed(_) => NotQueued::Closed,
        })
    }
}

impl OutboxReceiver {
    /// The next stanza to write, signalling first; `None` once every sender is gone and the
    /// lanes are empty. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Stanza> {
        tokio::select! {
            biased;
            Some(stanza) = self.signalling.recv() => Some(stanza),
            Some(stanza) = self.bulk.recv() => Some(stanza),
            else => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::iq::Iq;
    use xmpp_parsers::presence::Presence;

    fn iq(id: &str) -> Stanza {
        Stanza::Iq(Iq::from_get(id, xmpp_parsers::ping::Ping))
    }

    fn id_of(stanza: &Stanza) -> String {
        match stanza {
            Stanza::Iq(iq) => iq.id().to_string(),
            _ => "presence".into(),
        }
    }

    #[tokio::test]
    async fn signalling_goes_first_and_a_full_bulk_lane_does_not_block_it() {
        let (outbox, mut receiver) = with_capacity(2, 2);
        for _ in 0..2 {
            outbox
                .send(Stanza::Presence(Presence::available()), Lane::Bulk)
                .unwrap();
        }
        assert_eq!(
            outbox.send(Stanza::Presence(Presence::available()), Lane::Bulk),
            Err(NotQueued::Full(Lane::Bulk))
        );
        outbox.send(iq("a"), Lane::Signalling).unwrap();
        outbox.send(iq("b"), Lane::Signalling).unwrap();
        let mut order = Vec::new();
        for _ in 0..4 {
            order.push(id_of(&receiver.recv().await.unwrap()));
        }
        assert_eq!(order, ["a", "b", "presence", "presence"]);
        drop(outbox);
        assert!(receiver.recv().await.is_none());
    }
}
