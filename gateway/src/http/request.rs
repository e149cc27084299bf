//! Reading a request: the head (bounded in size and time), parsed with httparse, as far as
//! the server cares; and the byte range a `Range` header asks for.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time allowed for the request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A request as far as this server cares.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// HEAD rather than GET.
    pub head_only: bool,
    /// The path, without query or fragment.
    pub path: String,
    /// The `Range` header.
    pub range: Option<String>,
}

/// Reads and parses the request head; `Err` is the status to answer with.
pub async fn read_request(stream: &mut TcpStream) -> Result<Request, u16> {
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

/// Parses a complete request head (what [`read_request`] read); `Err` is the status to answer.
pub(crate) fn parse_request(head: &[u8]) -> Result<Request, u16> {
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
pub fn byte_range(header: Option<&str>, length: u64) -> Result<Option<(u64, u64)>, ()> {
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
