//! A sans-IO HTTP/1.1 client codec for the upstream hop: request heads
//! written into a buffer, response heads parsed (with `httparse`) and
//! response bodies decoded (by length, chunked, or until close) from a
//! buffer. No sockets, no clock: [`crate::client`] drives it.
//!
//! Why by hand rather than hyper's client connection: hyper runs each
//! upstream connection in a task of its own and hands every request,
//! response and body chunk over channels, which costs two task switches and
//! several wake-ups per request on the proxy's hottest path. Driven from the
//! request's own task, an exchange is one write and (usually) one read.
//! hyper's client stays in use where it earns its keep: protocol upgrades
//! (WebSocket), streamed request bodies and HTTP/2.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use smallvec::SmallVec;

/// Largest response head (status line and header fields) accepted, and
/// largest chunk-size line or trailer section.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one response head or trailer section.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (size, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("malformed response head: {0}")]
    Parse(#[from] httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed response: {0}")]
    Invalid(&'static str),
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
    #[error("connection closed before the response was complete")]
    Incomplete,
}

/// Appends a request head for `method target` with `headers` to `buf`.
///
/// The message is framed by `body_len` alone: any `Content-Length` or
/// `Transfer-Encoding` in `headers` is dropped and `Content-Length` written
/// afresh when there is a body, when the method normally carries one, or
/// when the client sent one.
pub fn encode_request(
    buf: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body_len: usize,
) {
    buf.extend_from_slice(method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            had_length |= name == CONTENT_LENGTH;
            continue;
        }
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    if body_len > 0 || had_length || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        buf.extend_from_slice(b"content-length: ");
        push_decimal(buf, body_len as u64);
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0 for HEAD answers, 204 and 304).
    Length(u64),
    Chunked,
    /// Everything until the server closes the connection.
    Close,
}

/// A parsed final response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request once the body has
    /// been read to its end.
    pub keep_alive: bool,
}

/// Parses the response head at the front of `buf`, consuming it. Interim
/// (1xx) responses are consumed and skipped. `Ok(None)`: more bytes needed.
/// `method` is the request's (a HEAD answer has no body).
pub fn parse_response(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        let Some(head) = parse_one(buf, method)? else {
            if buf.len() > MAX_HEAD {
                return Err(H1Error::HeadTooLarge);
            }
            return Ok(None);
        };
        if head.status.is_informational() {
            if head.status == StatusCode::SWITCHING_PROTOCOLS {
                // Only sent when the request asked for an upgrade, and those
                // do not take this path.
                return Err(H1Error::Invalid(
                    "101 Switching Protocols without an upgrade request",
                ));
            }
            continue;
        }
        return Ok(Some(head));
    }
}

fn parse_one(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, H1Error> {
    // Field positions within the head, resolved to shared slices of it once
    // the parser's borrow of `buf` ends (values are not copied).
    let mut fields: SmallVec<[(HeaderName, usize, usize); 24]> = SmallVec::new();
    let (len, code, minor) = {
        // Uninitialised slots: filling 128 empty headers (4 KB) on every
        // response showed in profiles.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            &buf[..],
            &mut slots,
        )? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return Ok(None),
        };
        let base = buf.as_ptr() as usize;
        for h in resp.headers.iter() {
            let name =
                HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| H1Error::Invalid("header name"))?;
            let start = h.value.as_ptr() as usize - base;
            fields.push((name, start, start + h.value.len()));
        }
        (len, resp.code.unwrap_or(0), resp.version.unwrap_or(1))
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("status code"))?;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, start, end) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| H1Error::Invalid("header value"))?;
        headers.append(name, value);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut keep_alive = match version {
        Version::HTTP_10 => has_token(&headers, "keep-alive"),
        _ => !has_token(&headers, "close"),
    };
    let framing = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else if headers.contains_key(TRANSFER_ENCODING) {
        // Transfer-Encoding overrides Content-Length; a message carrying
        // both may be a smuggling attempt, so the connection is not reused.
        if headers.contains_key(CONTENT_LENGTH) {
            keep_alive = false;
        }
        if last_coding_is_chunked(&headers) {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if headers.contains_key(CONTENT_LENGTH) {
        Framing::Length(content_length(&headers)?)
    } else {
        Framing::Close
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    tokens(headers, &CONNECTION).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    tokens(headers, &TRANSFER_ENCODING)
        .filter(|t| !t.is_empty())
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
}

/// The one Content-Length value; repeated fields must agree (RFC 9110 §8.6).
fn content_length(headers: &HeaderMap) -> Result<u64, H1Error> {
    let mut found = None;
    for t in tokens(headers, &CONTENT_LENGTH) {
        if t.is_empty() || t.len() > 19 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(H1Error::Invalid("Content-Length"));
        }
        let n: u64 = t.parse().map_err(|_| H1Error::Invalid("Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(H1Error::Invalid("conflicting Content-Length values"));
        }
        found = Some(n);
    }
    found.ok_or(H1Error::Invalid("Content-Length"))
}

/// What the body decoder found in the buffer.
#[derive(Debug, PartialEq)]
pub enum Event {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// Read more into the buffer and call again.
    NeedMore,
}

/// Decodes a response body from a buffer the caller fills.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Close,
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        Decoder { state }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes still to come, when the length is known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of the body from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Event, H1Error> {
        loop {
            match self.state {
                State::Done => return Ok(Event::End),
                State::Length(rem) | State::ChunkData(rem) => {
                    if buf.is_empty() {
                        return Ok(Event::NeedMore);
                    }
                    let n = rem.min(buf.len() as u64);
                    let left = rem - n;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkDataEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Event::Data(buf.split_to(n as usize).freeze()));
                }
                State::Close => {
                    if buf.is_empty() {
                        return Ok(Event::NeedMore);
                    }
                    return Ok(Event::Data(buf.split().freeze()));
                }
                State::ChunkSize => {
                    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(H1Error::Chunk("chunk-size line too long"));
                        }
                        return Ok(Event::NeedMore);
                    };
                    let size = chunk_size(&buf[..eol])?;
                    let _ = buf.split_to(eol + 2);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkDataEnd => {
                    if buf.len() < 2 {
                        return Ok(Event::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Chunk("missing CRLF after chunk data"));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (len, map) = match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete((len, fields))) => {
                            let mut map = HeaderMap::new();
                            for f in fields.iter() {
                                let name = HeaderName::from_bytes(f.name.as_bytes())
                                    .map_err(|_| H1Error::Chunk("trailer name"))?;
                                let value = HeaderValue::from_bytes(f.value)
                                    .map_err(|_| H1Error::Chunk("trailer value"))?;
                                map.append(name, value);
                            }
                            (len, map)
                        }
                        Ok(httparse::Status::Partial) => {
                            if buf.len() > MAX_HEAD {
                                return Err(H1Error::Chunk("trailer section too large"));
                            }
                            return Ok(Event::NeedMore);
                        }
                        Err(_) => return Err(H1Error::Chunk("malformed trailer section")),
                    };
                    let _ = buf.split_to(len);
                    self.state = State::Done;
                    if !map.is_empty() {
                        return Ok(Event::Trailers(map));
                    }
                }
            }
        }
    }

    /// The server closed the connection (after everything buffered was
    /// decoded): the end of a close-delimited body, an error for any other.
    pub fn eof(&mut self) -> Result<Event, H1Error> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(Event::End)
            }
            _ => Err(H1Error::Incomplete),
        }
    }
}

/// The size in a chunk-size line (without its CRLF); extensions ignored.
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 15 {
        return Err(H1Error::Chunk("bad chunk size"));
    }
    let rest = &line[digits..];
    let rest_ok = rest.is_empty() || {
        let after_ws = rest
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(rest.len());
        rest[after_ws..].is_empty() || rest[after_ws] == b';'
    };
    if !rest_ok {
        return Err(H1Error::Chunk("bad chunk size"));
    }
    let mut n = 0u64;
    for &b in &line[..digits] {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        n = n * 16 + u64::from(d);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str, method: &Method) -> Result<Option<ResponseHead>, H1Error> {
        let mut b = BytesMut::from(s);
        parse_response(&mut b, method)
    }

    /// Decodes all of `wire` fed in pieces of `step` bytes.
    fn decode_all(
        framing: Framing,
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), H1Error> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut body = Vec::new();
        let mut trailers = None;
        loop {
            match d.decode(&mut buf)? {
                Event::Data(b) => body.extend_from_slice(&b),
                Event::Trailers(t) => trailers = Some(t),
                Event::End => return Ok((body, trailers)),
                Event::NeedMore if fed < wire.len() => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
                Event::NeedMore => match d.eof()? {
                    Event::End => return Ok((body, trailers)),
                    e => panic!("unexpected {e:?}"),
                },
            }
        }
    }

    #[test]
    fn request_head_is_framed_by_the_body_it_carries() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.test"));
        h.insert("content-length", HeaderValue::from_static("999"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let mut buf = Vec::new();
        encode_request(&mut buf, &Method::POST, "/p?q=1", &h, 12345);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: example.test\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 12345\r\n\r\n"
        );
        let mut buf = Vec::new();
        encode_request(&mut buf, &Method::GET, "/", &HeaderMap::new(), 0);
        assert_eq!(buf, b"GET / HTTP/1.1\r\n\r\n");
        let mut buf = Vec::new();
        encode_request(&mut buf, &Method::PUT, "/", &HeaderMap::new(), 0);
        assert_eq!(buf, b"PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    }

    #[test]
    fn response_heads_and_their_framing() {
        let h = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Y: a b\r\n\r\nhello",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers["x-y"], "a b");

        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &Method::HEAD)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        let h = head(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Length(0));

        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive, "TE with CL: not reused");

        let h = head("HTTP/1.1 200 OK\r\n\r\n", &Method::GET).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &Method::GET)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = head(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(h.keep_alive);

        // Repeated equal lengths are fine, differing ones are not.
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n", &Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(2));
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            "HTTP/1.1 999999 OK\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(head(bad, &Method::GET).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn partial_heads_wait_and_interim_responses_are_skipped() {
        let wire = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        for cut in 0..wire.len() - 2 {
            let mut b = BytesMut::from(&wire[..cut]);
            assert!(
                parse_response(&mut b, &Method::GET).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        let mut b = BytesMut::from(wire);
        let h = parse_response(&mut b, &Method::GET).unwrap().unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(&b[..], b"ok");
        // A head that never ends is cut off.
        let mut b = BytesMut::from("HTTP/1.1 200 OK\r\n");
        b.extend_from_slice(&b"x-pad: 0123456789\r\n".repeat(MAX_HEAD / 19 + 1));
        assert!(matches!(
            parse_response(&mut b, &Method::GET),
            Err(H1Error::Parse(httparse::Error::TooManyHeaders)) | Err(H1Error::HeadTooLarge)
        ));
    }

    #[test]
    fn bodies_decode_whatever_the_read_sizes() {
        let chunked =
            b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\ngrpc-status: 0\r\nx-t: 1\r\n\r\n";
        for step in [1, 2, 3, 7, 1000] {
            let (body, trailers) = decode_all(Framing::Chunked, chunked, step).unwrap();
            assert_eq!(body, b"hello 0123456789");
            let t = trailers.unwrap();
            assert_eq!(t["grpc-status"], "0");
            assert_eq!(t["x-t"], "1");
            let (body, trailers) = decode_all(Framing::Chunked, b"3\r\nabc\r\n0\r\n\r\n", step).unwrap();
            assert_eq!((body.as_slice(), trailers), (&b"abc"[..], None));
            let (body, _) = decode_all(Framing::Length(5), b"hello", step).unwrap();
            assert_eq!(body, b"hello");
            let (body, _) = decode_all(Framing::Close, b"until close", step).unwrap();
            assert_eq!(body, b"until close");
        }
        let (body, _) = decode_all(Framing::Length(0), b"", 1).unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn bad_or_truncated_bodies_are_errors() {
        assert!(matches!(
            decode_all(Framing::Length(10), b"short", 100),
            Err(H1Error::Incomplete)
        ));
        assert!(matches!(
            decode_all(Framing::Chunked, b"5\r\nhel", 100),
            Err(H1Error::Incomplete)
        ));
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"-1\r\n",
            b"1234567890abcdef0\r\n",
            b"5 x\r\nhello\r\n",
        ] {
            assert!(
                matches!(decode_all(Framing::Chunked, bad, 100), Err(H1Error::Chunk(_))),
                "{bad:?}"
            );
        }
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(decode_all(Framing::Chunked, &long, 100_000).is_err());
        // Bytes after the declared length stay in the buffer (a pooled
        // connection with leftovers must not be reused).
        let mut d = Decoder::new(Framing::Length(2));
        let mut b = BytesMut::from(&b"okEXTRA"[..]);
        assert_eq!(d.decode(&mut b).unwrap(), Event::Data(Bytes::from_static(b"ok")));
        assert_eq!(d.decode(&mut b).unwrap(), Event::End);
        assert_eq!(&b[..], b"EXTRA");
    }
}
