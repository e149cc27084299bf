//! XEP-0363 HTTP upload of recordings to the XMPP server's upload service (Prosody
//! `mod_http_file_share`, ejabberd `mod_http_upload`): find the service with service
//! discovery, ask it for a slot as the mailbox JID, PUT the file, hand out the GET URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jid::{BareJid, Jid};
use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult};
use xmpp_parsers::http_upload::{SlotRequest, SlotResult};

use crate::xmpp::requests::{RequestError, XmppHandle};

/// The XEP-0363 namespace.
const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
/// Time allowed for each service discovery or slot request.
const IQ_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for the HTTP PUT.
const PUT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which upload service to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadSetting {
    /// Never upload.
    Off,
    /// The one found on the server the component is attached to.
    Discover {
        /// The server's domain, asked for its services.
        server: BareJid,
    },
    /// This service.
    Service(Jid),
}

impl UploadSetting {
    /// The setting for `voicemail.upload` (`"auto"`, `"off"` or a JID) of a component whose
    /// domain is `domain`: discovery asks the parent domain (`gw.example.org` asks
    /// `example.org`).
    pub fn from_config(upload: &str, domain: &str) -> Self {
        match upload {
            "off" => Self::Off,
            "auto" => match domain
                .split_once('.')
                .and_then(|(_, parent)| BareJid::new(parent).ok())
            {
                Some(server) => Self::Discover { server },
                None => Self::Off,
            },
            service => Jid::new(service).map(Self::Service).unwrap_or(Self::Off),
        }
    }
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No service to upload to.
    #[error("the XMPP server offers no HTTP upload service")]
    NoService,
    /// The file is larger than the service takes.
    #[error(
        "the recording ({size} bytes) is larger than the upload service takes ({limit} bytes)"
    )]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The service's limit.
        limit: u64,
    },
    /// The slot request failed.
    #[error("slot request: {0}")]
    Slot(#[from] RequestError),
    /// The slot answer was not a slot.
    #[error("slot request: {0}")]
    BadSlot(String),
    /// The PUT failed.
    #[error("upload: {0}")]
    Put(String),
    /// The file could not be read.
    #[error("{0}")]
    File(#[from] std::io::Error),
}

/// A service found, with its size limit.
#[derive(Debug, Clone)]
struct Service {
    jid: Jid,
    max_size: Option<u64>,
}

/// Uploads recordings; remembers the service it found.
pub struct Uploader {
    xmpp: XmppHandle,
    setting: UploadSetting,
    service: Option<Service>,
}

impl Uploader {
    /// An uploader that asks through `xmpp`.
    pub fn new(xmpp: XmppHandle, setting: UploadSetting) -> Self {
        Self {
            xmpp,
            setting,
            service: None,
        }
    }

    /// Whether uploads are configured at all.
    pub fn is_enabled(&self) -> bool {
        self.setting != UploadSetting::Off
    }

    /// Forgets the service found (after the component reconnects, say).
    pub fn forget_service(&mut self) {
        self.service = None;
    }

    /// Uploads `path` as `file_name` on behalf of `from` (the mailbox JID); returns the URL
    /// to share.
    pub async fn upload(
        &mut self,
        from: &Jid,
        path: &Path,
        file_name: &str,
        content_type: &str,
    ) -> Result<String, UploadError> {
        let service = self.service(from).await?;
        let size = tokio::fs::metadata(path).await?.len();
        if let Some(limit) = service.max_size.filter(|limit| size > *limit) {
            return Err(UploadError::TooLarge { size, limit });
        }
        let request = SlotRequest {
            filename: file_name.to_string(),
            size,
            content_type: Some(content_type.to_string()),
        };
        let answer = self
            .xmpp
            .iq(
                from.clone(),
                service.jid.clone(),
                true,
                request.into(),
                IQ_TIMEOUT,
            )
            .await?;
        let slot = answer
            .ok_or_else(|| UploadError::BadSlot("an empty answer".into()))
            .and_then(|e| {
                SlotResult::try_from(e).map_err(|e| UploadError::BadSlot(e.to_string()))
            })?;
        let headers: Vec<(String, String)> = slot
            .put
            .headers
            .iter()
            .map(|h| (h.name.as_str().to_string(), h.value.clone()))
            .collect();
        put(
            slot.put.url.clone(),
            headers,
            path.to_path_buf(),
            content_type.to_string(),
        )
        .await?;
        Ok(slot.get.url)
    }

    /// The upload service: configured, or found once by discovery.
    async fn service(&mut self, from: &Jid) -> Result<Service, UploadError> {
        if let Some(service) = &self.service {
            return Ok(service.clone());
        }
        let found = match &self.setting {
            UploadSetting::Off => None,
            UploadSetting::Service(jid) => {
                Some(self.probe(from, jid).await.unwrap_or_else(|| Service {
                    jid: jid.clone(),
                    max_size: None,
                }))
            }
            UploadSetting::Discover { server } => self.discover(from, server).await,
        };
        let service = found.ok_or(UploadError::NoService)?;
        tracing::info!(service = %service.jid, max_size = ?service.max_size, "HTTP upload service");
        self.service = Some(service.clone());
        Ok(service)
    }

    /// Asks the server for its items and each item whether it is an upload service.
    async fn discover(&self, from: &Jid, server: &BareJid) -> Option<Service> {
        let query = DiscoItemsQuery {
            node: None,
            rsm: None,
        };
        let items = self
            .xmpp
            .iq(
                from.clone(),
                Jid::from(server.clone()),
                true,
                query.into(),
                IQ_TIMEOUT,
            )
            .await
            .ok()
            .flatten()
            .and_then(|e| DiscoItemsResult::try_from(e).ok())?;
        for item in items.items {
            if let Some(service) = self.probe(from, &item.jid).await {
                return Some(service);
            }
        }
        None
    }

    /// Whether `jid` is an upload service, and its size limit.
    async fn probe(&self, from: &Jid, jid: &Jid) -> Option<Service> {
        let info = self
            .xmpp
            .iq(
                from.clone(),
                jid.clone(),
                true,
                DiscoInfoQuery { node: None }.into(),
                IQ_TIMEOUT,
            )
            .await
            .ok()
            .flatten()
            .and_then(|e: Element| DiscoInfoResult::try_from(e).ok())?;
        if !info.features.contains(NS_UPLOAD) {
            return None;
        }
        let max_size = info
            .extensions
            .iter()
            .filter(|form| form.form_type() == Some(NS_UPLOAD))
            .flat_map(|form| form.fields.iter())
            .find(|field| field.var.as_deref() == Some("max-file-size"))
            .and_then(|field| field.values.first())
            .and_then(|value| value.trim().parse().ok());
        Some(Service {
            jid: jid.clone(),
            max_size,
        })
    }
}

/// PUTs the file to `url` with the slot's headers (on a blocking thread: the HTTP client is
/// synchronous).
async fn put(
    url: String,
    headers: Vec<(String, String)>,
    path: PathBuf,
    content_type: String,
) -> Result<(), UploadError> {
    let work = tokio::task::spawn_blocking(move || -> Result<(), UploadError> {
        let file = std::fs::File::open(&path)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(PUT_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.put(&url).header("Content-Type", &content_type);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        // A file body carries its length.
        let response = request
            .send(file)
            .map_err(|e| UploadError::Put(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(UploadError::Put(format!("the server answered {status}")))
        }
    });
    work.await
        .map_err(|e| UploadError::Put(format!("upload task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        assert_eq!(
            UploadSetting::from_config("auto", "gw.example.org"),
            UploadSetting::Discover {
                server: BareJid::new("example.org").unwrap()
            }
        );
        assert_eq!(
            UploadSetting::from_config("auto", "localhost"),
            UploadSetting::Off
        );
        assert_eq!(
            UploadSetting::from_config("off", "gw.example.org"),
            UploadSetting::Off
        );
        assert_eq!(
            UploadSetting::from_config("upload.example.org", "gw.example.org"),
            UploadSetting::Service(Jid::new("upload.example.org").unwrap())
        );
    }
}
