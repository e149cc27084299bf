//! The gateway's own small HTTP server: recordings for mailbox owners (`/voicemail/...`), and
//! Prometheus metrics and a health check for operators (`/metrics`, `/health`), on one listener
//! or two. GET and HEAD, single byte ranges, one request per connection; requests are bounded
//! in size, time and number.

pub(crate) mod request;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::mailbox::{Mailboxes, RECORDINGS};
use crate::metrics::Metrics;
use request::{byte_range, read_request, Request};

/// Time allowed for a whole response (a slow client of a long message).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// What one listener serves.
#[derive(Clone, Default)]
pub struct Site {
    /// Recordings, by token.
    pub recordings: Option<Arc<Mailboxes>>,
    /// `/metrics` and `/health`.
    pub metrics: Option<Arc<Metrics>>,
}

/// A listening server, before it runs.
pub struct HttpServer {
    listener: TcpListener,
    base_url: String,
}

impl HttpServer {
    /// Binds `bind`; links start with `public_url` or, without one, `http://<bound address>`.
    pub async fn bind(bind: SocketAddr, public_url: Option<&str>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let base_url = match public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", listener.local_addr()?),
        };
        Ok(Self { listener, base_url })
    }

    /// The URL links to this server start with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves `site` until `shutdown`.
    pub async fn serve(self, site: Site, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let site = Arc::new(site);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let Ok((stream, peer)) = accepted else {
                // Out of descriptors, say: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "too many HTTP connections; closing one");
                continue;
            };
            let site = site.clone();
            tokio::spawn(async move {
                let served = tokio::time::timeout(RESPONSE_TIMEOUT, handle(stream, &site)).await;
                if let Ok(Err(e)) = served {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                drop(slot);
            });
        }
    }
}

async fn handle(mut stream: TcpStream, site: &Site) -> std::io::Result<()> {
    let request = match read_request(&mut stream).await {
        Ok(request) => request,
        Err(status) => return respond(&mut stream, status, "text/plain", b"", true).await,
    };
    let path = request.path.as_str();
    if let (Some(rest), Some(voicemail)) = (path.strip_prefix(RECORDINGS), &site.recordings) {
        let found = rest.split_once('/').and_then(|(token, name)| {
            voicemail
                .find_by_token(token)
                .filter(|(info, _)| info.file_name() == name)
        });
        if let Some((info, file)) = found {
            let attachment = format!("voicemail-{}", info.file_name());
            return respond_file(
                &mut stream,
                &request,
                &file,
                info.format.content_type(),
                &attachment,
            )
            .await;
        }
    } else if let Some(metrics) = &site.metrics {
        match path {
            "/metrics" => {
                let body = metrics.render();
                let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                return respond(
                    &mut stream,
                    200,
                    content_type,
                    body.as_bytes(),
                    request.head_only,
                )
                .await;
            }
            "/health" => {
                let (status, body) = if metrics.is_connected() {
                    (200, "ok\n")
                } else {
                    (503, "the component is not connected to the XMPP server\n")
                };
                return respond(
                    &mut stream,
                    status,
                    "text/plain",
                    body.as_bytes(),
                    request.head_only,
                )
                .await;
            }
            _ => {}
        }
    }
    respond(&mut stream, 404, "text/plain", b"", true).await
}

/// Sends a file, or the byte range asked for.
async fn respond_file(
    stream: &mut TcpStream,
    request: &Request,
    path: &Path,
    content_type: &str,
    file_name: &str,
) -> std::io::Result<()> {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return respond(stream, 404, "text/plain", b"", true).await;
    };
    let length = file.metadata().await?.len();
    let range = match byte_range(request.range.as_deref(), length) {
        Ok(range) => range,
        Err(()) => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{length}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return stream.write_all(head.as_bytes()).await;
        }
    };
    let (status, start, count, content_range) = match range {
        None => ("200 OK", 0, length, String::new()),
        Some((start, end)) => (
            "206 Partial Content",
            start,
            end - start + 1,
            format!("Content-Range: bytes {start}-{end}/{length}\r\n"),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {count}\r\n\
         {content_range}Accept-Ranges: bytes\r\nContent-Disposition: inline; filename=\"{file_name}\"\r\n\
         Cache-Control: private, max-age=86400\r\nX-Content-Type-Options: nosniff\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    if !request.head_only {
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let mut body = file.take(count);
        tokio::io::copy(&mut body, stream).await?;
    }
    stream.shutdown().await
}

/// Sends a whole response with `body` (not sent for HEAD).
async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\n{allow}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}
