//! Presence for the virtual JIDs: subscriptions are accepted and returned, probes answered,
//! available presence carries caps matching disco#info, and is announced again after every
//! reconnect. A virtual JID never sends unavailable presence while the gateway runs.
//!
//! Unavailable presence from a caller's device ends its calls; it only reaches the gateway from
//! subscribers (or devices that sent directed presence), so other callers' calls end by consent.

use std::time::{Duration, Instant};

use jid::{BareJid, Jid};
use xmpp_parsers::presence::{Presence, Type};
use xmpp_parsers::stanza::Stanza;

use super::core::RouterCore;

/// Subscribers announced to per tick after a reconnect (two stanzas each).
pub(super) const ANNOUNCE_PER_TICK: usize = 50;
/// How often announcements go out: 1,000 subscribers a second.
pub(super) const ANNOUNCE_TICK: Duration = Duration::from_millis(50);

impl RouterCore {
    pub(super) fn handle_presence(&mut self, now: Instant, presence: Presence) {
        let (Some(from), Some(to)) = (presence.from.clone(), presence.to.clone()) else {
            return;
        };
        let Some(virtual_jid) = self.virtual_jid(&to).map(|c| c.jid.clone()) else {
            if presence.type_ == Type::Subscribe {
                // Nobody here to subscribe to.
                self.send_presence(Presence::new(Type::Unsubscribed), &to, from);
            }
            return;
        };
        let callee_name = virtual_jid
            .node()
            .map(|n| n.to_string())
            .unwrap_or_default();
        let subscriber = from.to_bare();
        match presence.type_ {
            Type::Subscribe => {
                if let Err(why) = self.subscribers.add(&callee_name, subscriber.clone()) {
                    // Refused, so the subscriber does not believe it will hear from us.
                    tracing::debug!(%virtual_jid, %subscriber, ?why, "presence subscription not kept");
                    self.send_presence(
                        Presence::new(Type::Unsubscribed),
                        &virtual_jid,
                        subscriber.into(),
                    );
                    return;
                }
                self.send_presence(
                    Presence::new(Type::Subscribed),
                    &virtual_jid,
                    subscriber.clone().into(),
                );
                self.send_presence(
                    Presence::new(Type::Subscribe),
                    &virtual_jid,
                    subscriber.clone().into(),
                );
                self.send_available(&virtual_jid, subscriber.into());
            }
            // Only a `subscribe` adds a subscriber: anyone can send the rest.
            Type::Subscribed => {}
            Type::Unsubscribe => {
                self.send_presence(
                    Presence::new(Type::Unsubscribed),
                    &virtual_jid,
                    subscriber.clone().into(),
                );
                self.subscribers.remove(&callee_name, &subscriber);
            }
            Type::Unsubscribed => self.subscribers.remove(&callee_name, &subscriber),
            Type::Probe => self.send_available(&virtual_jid, from),
            // A device came online (a subscriber's broadcast, or directed presence): answer
            // it directly; the gateway may now ring it.
            Type::None if from.resource().is_some() => {
                // Kept only for subscribers (bounded in number): the dialer's offline check
                // asks about them alone, and anyone may send presence.
                let subscribed = self.subscribers.is_subscriber(&from.to_bare());
                if let (true, Ok(device)) = (subscribed, from.clone().try_into_full()) {
                    self.dialer.device_online(device);
                }
                self.send_available(&virtual_jid, from)
            }
            Type::Unavailable => {
                if let Ok(device) = from.try_into_full() {
                    self.dialer.device_offline(&device);
                    self.jingle.handle_peer_unavailable(now, &device);
                    self.process_signalling(now);
                }
            }
            Type::None | Type::Error => {}
        }
    }

    /// Queues available presence of every virtual JID to every subscriber (after connecting,
    /// or a reload), to go out at [`ANNOUNCE_PER_TICK`] per [`ANNOUNCE_TICK`]: all at once,
    /// thousands of subscribers would overflow the link's queue.
    pub(super) fn announce_presence(&mut self, now: Instant) {
        let pairs = self.subscriber_pairs();
        tracing::debug!(subscribers = pairs.len(), "announcing presence");
        self.announcements = pairs.into();
        self.announce_some(now);
    }

    /// Sends the next announcements, and says when the ones after are due.
    pub(super) fn announce_some(&mut self, now: Instant) {
        for _ in 0..ANNOUNCE_PER_TICK {
            let Some((virtual_jid, subscriber)) = self.announcements.pop_front() else {
                break;
            };
            self.send_available(&virtual_jid, subscriber.clone().into());
            // Their devices answer with their presence: who can be rung.
            self.send_presence(Presence::new(Type::Probe), &virtual_jid, subscriber.into());
        }
        self.next_announcement = match self.announcements.is_empty() {
            true => None,
            false => Some(now + ANNOUNCE_TICK),
        };
    }

    /// Unavailable presence to every subscriber, when the gateway stops (after its calls ended).
    pub(super) fn say_goodbye(&mut self) {
        for (virtual_jid, subscriber) in self.subscriber_pairs() {
            self.send_presence(
                Presence::new(Type::Unavailable),
                &virtual_jid,
                subscriber.into(),
            );
        }
    }

    fn subscriber_pairs(&self) -> Vec<(Jid, BareJid)> {
        self.subscribers
            .all()
            .into_iter()
            .filter_map(|(name, subscriber)| {
                let virtual_jid = self.virtual_jids.get(&name)?;
                Some((virtual_jid.jid.clone(), subscriber))
            })
            .collect()
    }

    fn send_available(&mut self, virtual_jid: &Jid, to: Jid) {
        let Some(info) = virtual_jid
            .node()
            .and_then(|n| self.virtual_jids.get(n.as_str()))
        else {
            return;
        };
        let mut presence = Presence::available().with_payload(info.caps.clone());
        presence.set_status("en", info.name.as_str());
        self.send_presence(presence, virtual_jid, to);
    }

    fn send_presence(&mut self, presence: Presence, from: &Jid, to: Jid) {
        let presence = presence.with_from(from.clone()).with_to(to);
        self.send(Stanza::Presence(presence));
    }
}
