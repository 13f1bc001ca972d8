//! The small part of HTTP/1.1 this tool speaks, shared by the client and the simulator:
//! chunked transfer coding (incremental, zero-copy) and the few header facts we act on.
//!
//! Hand-written over `httparse` rather than a full HTTP stack so that the client stamps the
//! time at the exact read that delivered the bytes, with no buffering layer in between, and
//! so the per-event path allocates nothing.

pub mod chunked;

/// Case-insensitive header lookup in an `httparse` header list.
pub fn header<'h>(headers: &'h [httparse::Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The largest message head either side waits for: a peer that never ends its head is
/// refused, not buffered without bound.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
