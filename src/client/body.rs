//! A response body framed by its transfer coding (chunked, `Content-Length`, or up to the
//! close): the payload is handed on as sub-slices of the bytes read, never copied.

use super::head::BodyKind;
use loadtest_base::http::chunked::{ChunkedDecoder, ChunkedError};
use std::time::Duration;
use tokio::io::AsyncReadExt;

pub struct BodyReader {
    kind: BodyKind,
    chunked: ChunkedDecoder,
    /// Bytes still to come of a `Content-Length` body.
    left: u64,
}

impl BodyReader {
    pub fn new(kind: BodyKind) -> Self {
        Self {
            kind,
            chunked: ChunkedDecoder::new(),
            left: match kind {
                BodyKind::Length(n) => n,
                _ => 0,
            },
        }
    }

    pub fn is_done(&self) -> bool {
        match self.kind {
            BodyKind::Chunked => self.chunked.is_done(),
            BodyKind::Length(_) => self.left == 0,
            BodyKind::UntilClose => false,
        }
    }

    /// Only the connection's end ends this body, so the connection cannot be reused.
    pub fn ends_at_close(&self) -> bool {
        matches!(self.kind, BodyKind::UntilClose)
    }

    /// Frame one read's bytes; `payload` gets the body bytes among them, in order.
    pub fn feed<'a>(
        &mut self,
        bytes: &'a [u8],
        mut payload: impl FnMut(&'a [u8]),
    ) -> Result<(), ChunkedError> {
        match self.kind {
            BodyKind::Chunked => {
                self.chunked.decode(bytes, payload)?;
            }
            BodyKind::Length(_) => {
                let take = (bytes.len() as u64).min(self.left) as usize;
                payload(&bytes[..take]);
                self.left -= take as u64;
            }
            BodyKind::UntilClose => payload(bytes),
        }
        Ok(())
    }

    /// Read a whole (error) body into `out`, keeping at most `cap` bytes of it; its first
    /// bytes are already in `buf[start..end]`.
    pub async fn read_all(
        &mut self,
        stream: &mut super::conn::Conn,
        buf: &mut [u8],
        start: usize,
        end: usize,
        out: &mut Vec<u8>,
        cap: usize,
    ) -> std::io::Result<()> {
        let keep = |p: &[u8], out: &mut Vec<u8>| {
            let room = cap.saturating_sub(out.len());
            out.extend_from_slice(&p[..p.len().min(room)]);
        };
        let mut chunk_out = Vec::new();
        self.feed(&buf[start..end], |p| chunk_out.extend_from_slice(p))
            .map_err(std::io::Error::other)?;
        keep(&chunk_out, out);
        // Error bodies are small; bound the wait in case the server never finishes one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.is_done() {
            let n = match tokio::time::timeout_at(deadline, stream.read(buf)).await {
                Ok(r) => r?,
                Err(_) => break,
            };
            if n == 0 {
                break;
            }
            chunk_out.clear();
            self.feed(&buf[..n], |p| chunk_out.extend_from_slice(p))
                .map_err(std::io::Error::other)?;
            keep(&chunk_out, out);
        }
        Ok(())
    }
}
