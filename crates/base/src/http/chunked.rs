//! Incremental decoder for `Transfer-Encoding: chunked` bodies.
//!
//! Fed arbitrary slices of the byte stream (a chunk header may be split across reads), it
//! hands out the payload as sub-slices of its input: no copy, no allocation.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkedError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("missing CRLF after chunk data")]
    BadTerminator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// After the size: extensions or whitespace until LF.
    SizeLineRest {
        value: u64,
    },
    /// Inside chunk data, this many bytes left.
    Data {
        left: u64,
    },
    /// Expecting the CR (or bare LF) that ends chunk data.
    DataEnd,
    /// Saw CR after chunk data; expecting LF.
    DataEndLf,
    /// After the last (zero) chunk: trailer lines until an empty line.
    Trailer {
        line_len: usize,
    },
    Done,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
            },
        }
    }

    /// True once the terminating zero-size chunk and its trailer have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode `input`, calling `payload` with each run of body bytes. Returns the number of
    /// input bytes consumed: all of them unless the body ended inside `input` (the rest is
    /// the next message's).
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        mut payload: impl FnMut(&'a [u8]),
    ) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Size { value, digits } => {
                    let b = input[i];
                    i += 1;
                    match (b as char).to_digit(16) {
                        Some(d) => {
                            if digits >= 15 {
                                return Err(ChunkedError::BadSize);
                            }
                            self.state = State::Size {
                                value: value * 16 + d as u64,
                                digits: digits + 1,
                            };
                        }
                        None if digits == 0 => return Err(ChunkedError::BadSize),
                        None if b == b'\n' => self.after_size(value),
                        None => self.state = State::SizeLineRest { value },
                    }
                }
                State::SizeLineRest { value } => {
                    let b = input[i];
                    i += 1;
                    if b == b'\n' {
                        self.after_size(value);
                    }
                }
                State::Data { left } => {
                    let take = ((input.len() - i) as u64).min(left) as usize;
                    payload(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data { left }
                    };
                }
                State::DataEnd => {
                    let b = input[i];
                    i += 1;
                    self.state = match b {
                        b'\r' => State::DataEndLf,
                        b'\n' => Self::start(),
                        _ => return Err(ChunkedError::BadTerminator),
                    };
                }
                State::DataEndLf => {
                    let b = input[i];
                    i += 1;
                    if b != b'\n' {
                        return Err(ChunkedError::BadTerminator);
                    }
                    self.state = Self::start();
                }
                State::Trailer { line_len } => {
                    let b = input[i];
                    i += 1;
                    self.state = match b {
                        b'\n' if line_len == 0 => State::Done,
                        b'\n' => State::Trailer { line_len: 0 },
                        b'\r' => State::Trailer { line_len },
                        _ => State::Trailer {
                            line_len: line_len + 1,
                        },
                    };
                }
                State::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn start() -> State {
        State::Size {
            value: 0,
            digits: 0,
        }
    }

    fn after_size(&mut self, value: u64) {
        self.state = if value == 0 {
            State::Trailer { line_len: 0 }
        } else {
            State::Data { left: value }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(wire: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for part in wire.chunks(piece) {
            d.decode(part, |p| out.extend_from_slice(p)).unwrap();
        }
        (out, d.is_done())
    }

    #[test]
    fn decodes_whole_and_split_at_every_size() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for piece in 1..=wire.len() {
            let (out, done) = decode_in_pieces(wire, piece);
            assert_eq!(out, b"hello, world", "piece size {piece}");
            assert!(done);
        }
    }

    #[test]
    fn stops_at_end_of_body_and_reports_consumed() {
        let wire = b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK";
        let mut d = ChunkedDecoder::new();
        let n = d.decode(wire, |_| {}).unwrap();
        assert!(d.is_done());
        assert_eq!(&wire[n..], b"HTTP/1.1 200 OK");
    }

    #[test]
    fn rejects_garbage_size_and_missing_terminator() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.decode(b"zz\r\n", |_| {}), Err(ChunkedError::BadSize));
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"2\r\nabX", |_| {}),
            Err(ChunkedError::BadTerminator)
        );
    }
}
