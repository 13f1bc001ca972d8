//! Incremental Server-Sent Events decoder (the WHATWG event-stream grammar).
//!
//! It takes bytes as they come off the wire, in any split: a line or an event may span
//! reads, one read may hold many events. Line ends may be `\n`, `\r\n` or `\r`. Comment
//! lines (`:`) are skipped, `event:` names the event, `data:` lines are joined with `\n`,
//! `id:`/`retry:` are ignored. Buffers are reused, so after warm-up nothing is allocated.
//!
//! What a server sends cannot grow our memory without bound: a line longer than
//! [`MAX_LINE`] or an event larger than [`MAX_EVENT`] stops the decoder (the stream is
//! then a protocol error), where a server sending `data: ` and 200 MB without a line end
//! used to cost 239 MB per stream.

/// The longest line kept (a vLLM chunk is ~300 bytes; one with top-20 logprobs a few KB).
pub const MAX_LINE: usize = 1 << 20;
/// The largest event (its `data:` lines joined).
pub const MAX_EVENT: usize = 4 << 20;

/// One dispatched event. `event` is empty for the default `message` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: &'a [u8],
    pub data: &'a [u8],
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The current, incomplete line.
    line: Vec<u8>,
    /// `data` of the event being assembled.
    data: Vec<u8>,
    has_data: bool,
    event: Vec<u8>,
    /// The previous byte was a CR: a following LF belongs to the same line end.
    after_cr: bool,
    /// Lines that were neither fields, comments nor blank (a non-SSE body shows up here).
    stray_lines: u64,
    /// The start of the first stray line, for the error message.
    first_stray: Vec<u8>,
    /// A line or an event outgrew its cap: nothing more is decoded.
    overflowed: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; `on_event` is called for each complete event, in order.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        // an empty read changes nothing: a CR before it still pairs with an LF after it
        if self.overflowed || bytes.is_empty() {
            return;
        }
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let was_cr = bytes[pos] == b'\r';
            if self.line.len() + pos > MAX_LINE {
                return self.overflow();
            }
            if self.line.is_empty() {
                self.process_line(&bytes[..pos], &mut on_event);
            } else {
                self.line.extend_from_slice(&bytes[..pos]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, &mut on_event);
                self.line = line;
                self.line.clear();
            }
            bytes = &bytes[pos + 1..];
            if was_cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.overflowed {
                return;
            }
        }
        if self.line.len() + bytes.len() > MAX_LINE {
            return self.overflow();
        }
        self.line.extend_from_slice(bytes);
    }

    /// Stop decoding and let go of the buffers (the stream is not an event stream we keep).
    fn overflow(&mut self) {
        self.overflowed = true;
        self.line = Vec::new();
        self.data = Vec::new();
        self.has_data = false;
    }

    /// A line or an event outgrew [`MAX_LINE`] / [`MAX_EVENT`]: the stream was abandoned.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The body ended. An event whose `data:` lines are complete but that lacks the closing
    /// blank line is dispatched (the spec would drop it; some servers and captures end a
    /// stream with `data: [DONE]\n`). A partial line is still discarded.
    pub fn finish(&mut self, mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.has_data {
            on_event(SseEvent {
                event: &self.event,
                data: &self.data,
            });
        }
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        self.line.clear();
    }

    /// Lines seen that were not SSE, and the start of the first one.
    pub fn stray(&self) -> (u64, &[u8]) {
        (self.stray_lines, &self.first_stray)
    }

    /// Bytes of an unfinished line or event still held (a stream cut mid-event leaves some).
    pub fn pending(&self) -> usize {
        self.line.len() + self.data.len()
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            if self.has_data {
                on_event(SseEvent {
                    event: &self.event,
                    data: &self.data,
                });
            }
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() > MAX_EVENT {
                    return self.overflow();
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            b"id" | b"retry" => {}
            _ => {
                if self.stray_lines == 0 {
                    self.first_stray = line[..line.len().min(200)].to_vec();
                }
                self.stray_lines += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(parts: &[&[u8]]) -> Vec<(String, String)> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for p in parts {
            d.feed(p, |e| {
                out.push((
                    String::from_utf8_lossy(e.event).into_owned(),
                    String::from_utf8_lossy(e.data).into_owned(),
                ))
            });
        }
        out
    }

    #[test]
    fn events_split_across_reads_and_many_in_one_read() {
        let want = vec![
            (String::new(), "a".to_string()),
            (String::new(), "b".to_string()),
        ];
        assert_eq!(collect(&[b"data: a\n\ndata: b\n\n"]), want);
        assert_eq!(collect(&[b"da", b"ta: a\n", b"\nda", b"ta: b\n\n"]), want);
    }

    #[test]
    fn crlf_and_cr_line_ends_even_split_between_cr_and_lf() {
        let want = vec![(String::new(), "x".to_string())];
        assert_eq!(collect(&[b"data: x\r\n\r\n"]), want);
        assert_eq!(collect(&[b"data: x\r", b"\n\r", b"\n"]), want);
        assert_eq!(collect(&[b"data: x\r\r"]), want);
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/sse_decoder.rs`): an empty read between a CR and
    /// its LF made two line ends of one.
    #[test]
    fn an_empty_read_between_cr_and_lf_splits_nothing() {
        let want = vec![(String::new(), "x\ny".to_string())];
        assert_eq!(collect(&[b"data: x\r", b"", b"\ndata: y\n\n"]), want);
        assert_eq!(collect(&[b"data: x\r\ndata: y\n\n"]), want);
    }

    #[test]
    fn comments_event_names_multiline_data_and_no_space() {
        let got = collect(&[b": keep-alive\n\nevent: error\ndata:{\"e\":1}\ndata: 2\n\n"]);
        assert_eq!(got, vec![("error".to_string(), "{\"e\":1}\n2".to_string())]);
    }

    #[test]
    fn non_sse_body_is_counted_as_stray_lines() {
        let mut d = SseDecoder::new();
        let mut n = 0;
        d.feed(b"{\"error\": \"boom\"}\n", |_| n += 1);
        assert_eq!(n, 0);
        assert_eq!(d.stray(), (1, &b"{\"error\": \"boom\"}"[..]));
    }

    /// 200 MB without a line end, or an event of endless `data:` lines, stop the decoder
    /// with its buffers freed, not grow them (issue 13, case 5).
    #[test]
    fn a_line_or_an_event_past_its_cap_stops_the_decoder() {
        let mut d = SseDecoder::new();
        let mut n = 0;
        let block = vec![b'x'; 64 * 1024];
        d.feed(b"data: ", |_| n += 1);
        for _ in 0..(MAX_LINE / block.len() + 2) {
            d.feed(&block, |_| n += 1);
        }
        assert!(d.overflowed() && d.pending() == 0 && n == 0);
        d.feed(b"\n\ndata: late\n\n", |_| n += 1);
        assert_eq!(n, 0, "nothing is decoded after the cap");
        let mut d = SseDecoder::new();
        let line = [b"data: ".as_slice(), &block, b"\n"].concat();
        for _ in 0..(MAX_EVENT / block.len() + 2) {
            d.feed(&line, |_| n += 1);
        }
        assert!(d.overflowed() && n == 0);
        // a line just under the cap still decodes
        let mut d = SseDecoder::new();
        let big = [b"data: ".as_slice(), &vec![b'y'; MAX_LINE - 16], b"\n\n"].concat();
        d.feed(&big, |e| n += e.data.len());
        assert!(!d.overflowed() && n == MAX_LINE - 16);
    }

    #[test]
    fn unfinished_event_is_not_dispatched() {
        let mut d = SseDecoder::new();
        let mut n = 0;
        d.feed(b"data: partial", |_| n += 1);
        assert_eq!(n, 0);
        assert!(d.pending() > 0);
    }
}
