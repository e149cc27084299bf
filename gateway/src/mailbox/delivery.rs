//! Hands each recorded message to its mailbox's owners: a chat message from the mailbox JID
//! saying who called, when and for how long, then the recording as an attachment (body and
//! XEP-0066 `jabber:x:oob` carrying the same URL, which is what Conversations, Dino and Gajim
//! show as a playable file). The URL is the XMPP server's upload (XEP-0363) where it offers one,
//! else the gateway's own HTTP server. A message is marked delivered in its metadata only once
//! sent, so one that could not be delivered is tried again later, and at the next start.

use std::sync::Arc;
use std::time::Duration;

use jid::{BareJid, Jid};
use minidom::Element;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::oob::Oob;

use super::store::Ending;
use super::time::{clock_duration, Utc};
use super::upload::{UploadSetting, Uploader};
use super::{Mailboxes, MessageInfo};
use crate::config::Delivery;
use crate::metrics;
use crate::xmpp::requests::XmppHandle;

/// XEP-0334 hints: keep the messages in the owners' archives.
const NS_HINTS: &str = "urn:xmpp:hints";
/// First wait before trying a failed delivery again; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Longest wait between attempts.
const MAX_RETRY: Duration = Duration::from_secs(600);

/// How messages reach their owners.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The component domain (mailbox JIDs are `<mailbox>@<domain>`).
    pub domain: String,
    /// XEP-0363 upload.
    pub upload: UploadSetting,
    /// The gateway's own HTTP server's base URL, if it runs one.
    pub base_url: Option<String>,
}

/// Delivers messages from `queue` until `shutdown`.
pub async fn run(
    voicemail: Arc<Mailboxes>,
    mut queue: mpsc::UnboundedReceiver<MessageInfo>,
    mut xmpp: XmppHandle,
    config: DeliveryConfig,
    shutdown: CancellationToken,
) {
    let mut uploader = Uploader::new(xmpp.clone(), config.upload.clone());
    loop {
        let info = tokio::select! {
            _ = shutdown.cancelled() => return,
            info = queue.recv() => match info {
                Some(info) => info,
                None => return,
            },
        };
        let mut wait = FIRST_RETRY;
        loop {
            voicemail.metrics().set_undelivered(queue.len() + 1);
            let online = tokio::select! {
                _ = shutdown.cancelled() => return,
                online = xmpp.wait_online() => online,
            };
            if !online {
                return;
            }
            match deliver(&voicemail, &mut uploader, &xmpp, &config, &info).await {
                Ok(()) => {
                    voicemail.metrics().set_undelivered(queue.len());
                    break;
                }
                Err(e) => {
                    tracing::warn!(id = %info.id, mailbox = %info.mailbox, error = %e,
                        retry_in = ?wait, "cannot deliver a message yet");
                    uploader.forget_service();
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }
}

/// Why a delivery must be tried again.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("no URL for the recording: {0}")]
    NoUrl(String),
    #[error("{0}")]
    Xmpp(#[from] crate::xmpp::requests::RequestError),
}

async fn deliver(
    voicemail: &Mailboxes,
    uploader: &mut Uploader,
    xmpp: &XmppHandle,
    config: &DeliveryConfig,
    queued: &MessageInfo,
) -> Result<(), DeliveryError> {
    let Some(mailbox) = voicemail.mailbox(&queued.mailbox) else {
        tracing::warn!(mailbox = %queued.mailbox, "message for a mailbox no longer configured; kept, not delivered");
        return Ok(());
    };
    // The stored metadata is the truth: the owner may have deleted the message meanwhile.
    let Some(mut info) = voicemail
        .messages(&queued.mailbox)
        .into_iter()
        .find(|m| m.id == queued.id)
    else {
        return Ok(());
    };
    if info.delivered {
        return Ok(());
    }
    let from = BareJid::new(&format!("{}@{}", info.mailbox, config.domain))
        .map(Jid::from)
        .map_err(|e| DeliveryError::NoUrl(e.to_string()))?;
    let url = match info.url.clone() {
        Some(url) => url,
        None => {
            let delivery = mailbox.config.delivery;
            let url = url_for(voicemail, uploader, config, delivery, &from, &info).await?;
            // Kept at once: a crash before the chat messages go out must not upload again.
            info.url = Some(url.clone());
            if let Err(e) = voicemail.update(&info) {
                tracing::warn!(id = %info.id, error = %e, "cannot store the message's URL");
            }
            url
        }
    };
    let text = summary(&info);
    for owner in &mailbox.config.owners {
        let Ok(to) = Jid::new(owner) else { continue };
        xmpp.send_message(chat(&from, &to, text.clone(), Vec::new()))?;
        let attachment = Oob {
            url: url.clone(),
            desc: Some(text.clone()),
        };
        xmpp.send_message(chat(&from, &to, url.clone(), vec![attachment.into()]))?;
    }
    info.delivered = true;
    let own = config
        .base_url
        .as_ref()
        .is_some_and(|base| url.starts_with(base.as_str()));
    voicemail.metrics().recording_delivered(if own {
        metrics::DELIVERED_BY_GATEWAY
    } else {
        metrics::DELIVERED_BY_UPLOAD
    });
    if let Err(e) = voicemail.update(&info) {
        tracing::warn!(id = %info.id, error = %e, "cannot mark the message delivered");
    }
    tracing::info!(id = %info.id, mailbox = %info.mailbox, %url, owners = mailbox.config.owners.len(), "message delivered");
    Ok(())
}

/// The URL owners get: an upload where the server offers one, else the gateway's own.
async fn url_for(
    voicemail: &Mailboxes,
    uploader: &mut Uploader,
    config: &DeliveryConfig,
    delivery: Delivery,
    from: &Jid,
    info: &MessageInfo,
) -> Result<String, DeliveryError> {
    let own = config
        .base_url
        .as_ref()
        .map(|base| recording_url(base, &info.token, &info.file_name()));
    if uploader.is_enabled() && delivery == Delivery::Upload {
        let path = voicemail
            .recording_path(info)
            .ok_or_else(|| DeliveryError::NoUrl("no such mailbox".into()))?;
        let name = format!("voicemail-{}", info.file_name());
        match uploader
            .upload(from, &path, &name, info.format.content_type())
            .await
        {
            Ok(url) => return Ok(url),
            Err(e) => match &own {
                Some(_) => {
                    tracing::info!(id = %info.id, error = %e, "not uploaded; the gateway serves the recording")
                }
                None => return Err(DeliveryError::NoUrl(e.to_string())),
            },
        }
    }
    own.ok_or_else(|| DeliveryError::NoUrl("neither upload nor [http] is available".into()))
}

/// "Voicemail from alice@example.org, 0:42, 2026-11-24 14:03 UTC."
pub fn summary(info: &MessageInfo) -> String {
    let caller = info.caller.split('/').next().unwrap_or(&info.caller);
    let mut text = format!(
        "Voicemail from {caller}, {}, {}.",
        clock_duration(info.duration()),
        Utc::from_unix(info.received).human()
    );
    match info.ending {
        Ending::StorageFailed => text.push_str(" Cut short: the gateway's storage is full."),
        Ending::Interrupted => text.push_str(" Recovered after the gateway restarted."),
        _ => {}
    }
    text
}

fn chat(from: &Jid, to: &Jid, body: String, payloads: Vec<Element>) -> Message {
    let mut message = Message::new_with_type(MessageType::Chat, Some(to.clone()));
    message.from = Some(from.clone());
    message.id = Some(Id(format!("vm-{:x}", rand::random::<u64>())));
    message.payloads = payloads;
    message
        .payloads
        .push(Element::builder("store", NS_HINTS).build());
    message.with_body(Lang(String::new()), body)
}

/// The path prefix of recordings on the gateway's HTTP server.
pub const RECORDINGS: &str = "/voicemail/";

/// The URL of a recording on the server at `base_url`.
pub fn recording_url(base_url: &str, token: &str, file_name: &str) -> String {
    format!("{base_url}{RECORDINGS}{token}/{file_name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RecordingFormat;

    #[test]
    fn the_summary_says_who_when_and_how_long() {
        let mut info =
            MessageInfo::new("vm", "alice@x.org/phone", RecordingFormat::OggOpus, "opus");
        info.received = 1_795_529_592;
        info.duration_ms = 42_400;
        info.ending = Ending::HungUp;
        assert_eq!(
            summary(&info),
            "Voicemail from alice@x.org, 0:42, 2026-11-24 14:13 UTC."
        );
        info.ending = Ending::StorageFailed;
        assert!(summary(&info).ends_with("storage is full."));
    }
}
