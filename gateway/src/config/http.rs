//! `[http]` and `[metrics]`: the gateway's own HTTP listeners.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[metrics]`: where Prometheus scrapes the gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port serving `/metrics` (OpenMetrics text) and `/health` (200 while the
    /// component is connected, 503 otherwise), e.g. `"127.0.0.1:9464"`; unset: none. May be
    /// the same as `http.bind`. Keep it private: it is not authenticated.
    pub bind: Option<SocketAddr>,
}

/// `[http]`: the gateway's own small HTTP server, which serves recordings under unguessable
/// URLs when the XMPP server offers no upload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on, e.g. `"127.0.0.1:8080"`; unset: no server.
    pub bind: Option<SocketAddr>,
    /// The server's URL as owners' clients reach it (behind a reverse proxy,
    /// `"https://gw.example.org/voicemail-files"`); default `http://<bind>`.
    pub public_url: Option<String>,
}

impl HttpConfig {
    /// The base URL links start with, without a trailing slash.
    pub fn base_url(&self) -> Option<String> {
        match (&self.public_url, self.bind) {
            (Some(url), _) => Some(url.trim_end_matches('/').to_string()),
            (None, Some(bind)) => Some(format!("http://{bind}")),
            (None, None) => None,
        }
    }
}
