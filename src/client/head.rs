//! The head of an HTTP/1.1 response: its status, how its body is framed, and whether the
//! connection may carry another request.
//!
//! Bytes in, facts out, no IO: the streaming driver calls it after every read until the head
//! is complete, and tests and fuzz targets feed it literals.

use loadtest_base::http::{self, MAX_HEAD_BYTES};
use thiserror::Error;

/// How the body after the head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `Transfer-Encoding: chunked`: the zero-size chunk ends it.
    Chunked,
    /// `Content-Length`: after this many bytes.
    Length(u64),
    /// Neither: the server closing the connection ends it.
    UntilClose,
}

/// A complete response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub body: BodyKind,
    /// The connection may be reused once the body was read to its end (HTTP/1.1 without
    /// `Connection: close`).
    pub keep_alive: bool,
    /// Bytes the head took: the body starts here.
    pub len: usize,
}

impl ResponseHead {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why the bytes are not the start of a response we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeadError {
    /// [`MAX_HEAD_BYTES`] read and the head still not complete: a server that never ends its
    /// head must not grow our memory.
    #[error("response head too large")]
    TooLarge,
    /// Not HTTP/1.x, or a malformed status line or header (more than 32 headers included).
    #[error("invalid HTTP response ({0})")]
    Invalid(httparse::Error),
}

/// Parse the head at the start of `bytes` (everything read so far). `Ok(None)`: the head is
/// not complete yet, read more and call again with all of it.
///
/// A `Transfer-Encoding` with `chunked` wins over a `Content-Length`; an unreadable
/// `Content-Length` counts as absent (the body then ends at close).
pub fn parse_response_head(bytes: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    // 32 headers: vLLM (uvicorn) sends 4-6; a proxy in front adds a few
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(bytes).map_err(HeadError::Invalid)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if bytes.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        httparse::Status::Partial => return Ok(None),
    };
    let hs = resp.headers;
    let chunked =
        http::header(hs, "transfer-encoding").is_some_and(|v| http::has_token(v, "chunked"));
    let length = http::header(hs, "content-length")
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    let body = match (chunked, length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(n)) => BodyKind::Length(n),
        (false, None) => BodyKind::UntilClose,
    };
    // HTTP/1.0 closes unless asked otherwise, and we never ask
    let close = http::header(hs, "connection").is_some_and(|v| http::has_token(v, "close"))
        || resp.version == Some(0);
    Ok(Some(ResponseHead {
        status: resp.code.unwrap_or(0),
        body,
        keep_alive: !close,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<ResponseHead>, HeadError> {
        parse_response_head(s.as_bytes())
    }

    #[test]
    fn complete_head_says_where_the_body_starts() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
        let bytes = format!("{head}data: x\n\n");
        let h = parse(&bytes).unwrap().unwrap();
        assert_eq!(
            h,
            ResponseHead {
                status: 200,
                body: BodyKind::UntilClose,
                keep_alive: true,
                len: head.len(),
            }
        );
        assert!(h.is_success());
    }

    #[test]
    fn partial_head_asks_for_more_at_every_cut() {
        let full = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(full).unwrap().unwrap().body, BodyKind::Length(5));
    }

    #[test]
    fn over_long_head_is_an_error_not_a_wait() {
        // one header value that never ends, one byte short of the cap: still worth waiting for
        let mut bytes = b"HTTP/1.1 200 OK\r\nx-filler: ".to_vec();
        bytes.resize(MAX_HEAD_BYTES - 1, b'a');
        assert_eq!(parse_response_head(&bytes), Ok(None));
        bytes.push(b'a');
        assert_eq!(parse_response_head(&bytes), Err(HeadError::TooLarge));
    }

    #[test]
    fn head_complete_within_the_cap_is_read_even_at_the_cap() {
        let head = "HTTP/1.1 204 No Content\r\n\r\n";
        let mut bytes = head.as_bytes().to_vec();
        bytes.resize(MAX_HEAD_BYTES, b'z');
        let h = parse_response_head(&bytes).unwrap().unwrap();
        assert_eq!((h.status, h.len), (204, head.len()));
    }

    #[test]
    fn bad_status_line_is_invalid() {
        for bytes in [
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "<html>oops</html>\r\n\r\n",
            "data: {\"choices\":[]}\n\n",
        ] {
            let e = parse(bytes).unwrap_err();
            assert!(matches!(e, HeadError::Invalid(_)), "{bytes:?}: {e:?}");
            assert!(e.to_string().starts_with("invalid HTTP response ("), "{e}");
        }
    }

    #[test]
    fn too_many_headers_is_invalid() {
        let mut bytes = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..33 {
            bytes.push_str(&format!("x-h{i}: v\r\n"));
        }
        bytes.push_str("\r\n");
        assert_eq!(
            parse(&bytes),
            Err(HeadError::Invalid(httparse::Error::TooManyHeaders))
        );
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let h = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
    }

    #[test]
    fn content_length_frames_the_body_and_a_bad_one_counts_as_absent() {
        let h = parse("HTTP/1.1 200 OK\r\ncontent-length:  42 \r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::Length(42));
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::UntilClose);
    }

    #[test]
    fn close_or_http_1_0_ends_keep_alive() {
        let h = parse("HTTP/1.1 503 Busy\r\nConnection: keep-alive, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert!(!h.is_success());
        let h = parse("HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
    }
}
