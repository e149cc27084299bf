//! The gateway's own small HTTP server: serves each recording at
//! `<base>/voicemail/<token>/<file>`, where the token is 128 random bits known only to the
//! message's owners. GET and HEAD, single byte ranges (players seek, Conversations resumes),
//! one request per connection. Requests are bounded in size, time and number.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Voicemail;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time allowed for the request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole response (a slow client of a long message).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// The path prefix of recordings.
pub const PREFIX: &str = "/voicemail/";

/// The listening server, before it runs.
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

    /// The URL recordings' links start with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves until `shutdown`.
    pub async fn serve(self, voicemail: Arc<Voicemail>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
            let voicemail = voicemail.clone();
            tokio::spawn(async move {
                let served =
                    tokio::time::timeout(RESPONSE_TIMEOUT, handle(stream, &voicemail)).await;
                if let Ok(Err(e)) = served {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                drop(slot);
            });
        }
    }
}

/// The recording URL of a message.
pub fn recording_url(base_url: &str, token: &str, file_name: &str) -> String {
    format!("{base_url}{PREFIX}{token}/{file_name}")
}

/// A request as far as this server cares.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    head_only: bool,
    path: String,
    range: Option<String>,
}

/// Reads and parses the request head; `Err` is the status to answer with.
async fn read_request(stream: &mut TcpStream) -> Result<Request, u16> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
            if n == 0 {
                return Err(400u16);
            }
            buffer.extend_from_slice(&chunk[..n]);
            if buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(());
            }
            if buffer.len() > MAX_HEAD {
                return Err(431u16);
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .map_err(|_| 408u16)??;
    parse_request(&buffer)
}

fn parse_request(head: &[u8]) -> Result<Request, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(400),
    }
    let head_only = match request.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Err(405),
    };
    let path = request.path.unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or(path).to_string();
    let range = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("range"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_string);
    Ok(Request {
        head_only,
        path,
        range,
    })
}

/// The byte range asked for, within a file of `length` bytes: `Ok(None)` for the whole file,
/// `Err(())` for a range that cannot be served (416). Multiple ranges get the whole file.
fn byte_range(header: Option<&str>, length: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        // The last `end` bytes.
        let suffix: u64 = end.parse().map_err(|_| ())?;
        if suffix == 0 {
            return Err(());
        }
        (
            length.saturating_sub(suffix),
            length.checked_sub(1).ok_or(())?,
        )
    } else {
        let start: u64 = start.parse().map_err(|_| ())?;
        let end = if end.is_empty() {
            length.checked_sub(1).ok_or(())?
        } else {
            end.parse::<u64>()
                .map_err(|_| ())?
                .min(length.saturating_sub(1))
        };
        (start, end)
    };
    if range.0 > range.1 || range.0 >= length {
        return Err(());
    }
    Ok(Some(range))
}

async fn handle(mut stream: TcpStream, voicemail: &Voicemail) -> std::io::Result<()> {
    let request = match read_request(&mut stream).await {
        Ok(request) => request,
        Err(status) => return respond_status(&mut stream, status).await,
    };
    let found = request
        .path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(token, name)| {
            voicemail
                .find_by_token(token)
                .filter(|(info, _)| info.file_name() == name)
        });
    let Some((info, path)) = found else {
        return respond_status(&mut stream, 404).await;
    };
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return respond_status(&mut stream, 404).await;
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
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {count}\r\n{content_range}\
         Accept-Ranges: bytes\r\nContent-Disposition: inline; filename=\"voicemail-{}\"\r\n\
         Cache-Control: private, max-age=86400\r\nX-Content-Type-Options: nosniff\r\n\
         Connection: close\r\n\r\n",
        info.format.content_type(),
        info.file_name(),
    );
    stream.write_all(head.as_bytes()).await?;
    if !request.head_only {
        file.seek(SeekFrom::Start(start)).await?;
        let mut body = file.take(count);
        tokio::io::copy(&mut body, &mut stream).await?;
    }
    stream.shutdown().await
}

async fn respond_status(stream: &mut TcpStream, status: u16) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n{allow}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_far_as_needed() {
        let request = parse_request(
            b"GET /voicemail/abc/x.ogg?download=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            request,
            Request {
                head_only: false,
                path: "/voicemail/abc/x.ogg".into(),
                range: Some("bytes=0-9".into()),
            }
        );
        assert!(parse_request(b"HEAD / HTTP/1.1\r\n\r\n").unwrap().head_only);
        assert_eq!(parse_request(b"PUT / HTTP/1.1\r\n\r\n"), Err(405));
        assert_eq!(parse_request(b"\x00\x01garbage\r\n\r\n"), Err(400));
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=9-3"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=x-y"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=0-"), 0), Err(()));
        assert_eq!(byte_range(Some("items=0-1"), 100), Ok(None));
    }
}
