//! A call to a `wasi:http` component travels like any other call: as one
//! job through the queue, its request and response each one body. Both are
//! written as `message/http` (RFC 9112 §10.1: the HTTP/1.1 message itself,
//! head then body), so the queue's backends, budgets, retries, metering and
//! logs need nothing new, and what a job holds is a standard format.
//!
//! The body is everything after the head: the message is never framed by a
//! `Content-Length` or chunked encoding, and those headers are dropped on
//! both sides (the front door sets the length it answers with).

/// Media type of a call's input when the function is a `wasi:http` component.
pub const REQUEST_TYPE: &str = "message/http; msgtype=request";
/// Media type of that call's output.
pub const RESPONSE_TYPE: &str = "message/http; msgtype=response";
/// Most header fields a request or response may carry either way: what a
/// caller or a function can make the host parse and hold.
pub const MAX_HEADERS: usize = 100;
/// Largest head (request or status line plus header fields) either way, in
/// bytes; the body's own caps are the body and output limits.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Header fields that describe one connection, not the message, or that
/// the host recomputes: neither passed to the function nor taken from it.
/// `authorization` carries the tenant's API key, which is not the
/// function's to see.
const NOT_FORWARDED: [&str; 11] = [
    "authorization",
    "connection",
    "content-length",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header field travels between the caller and the function.
pub fn is_forwarded(name: &str) -> bool {
    !NOT_FORWARDED.iter().any(|skipped| name.eq_ignore_ascii_case(skipped))
}

/// Header fields in order, names lower-case, values as sent.
pub type Fields = Vec<(String, Vec<u8>)>;

/// The bytes `fields` take in a head (`name: value\r\n` each).
pub fn head_bytes(fields: &Fields) -> usize {
    fields.iter().map(|(name, value)| name.len() + value.len() + 4).sum()
}

/// Whether `fields` are within [`MAX_HEADERS`] and [`MAX_HEAD_BYTES`].
pub fn head_fits(fields: &Fields) -> bool {
    fields.len() <= MAX_HEADERS && head_bytes(fields) <= MAX_HEAD_BYTES
}

/// An HTTP request to a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query as the function sees them, starting with `/`.
    pub target: String,
    /// Header fields (never those [`is_forwarded`] refuses).
    pub headers: Fields,
    /// The body.
    pub body: Vec<u8>,
}

/// A function's HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, 100–999.
    pub status: u16,
    /// Header fields (never those [`is_forwarded`] refuses).
    pub headers: Fields,
    /// The body.
    pub body: Vec<u8>,
}

/// Why bytes are not a `message/http` this host wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The head does not parse.
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
    /// The head has no end.
    #[error("the HTTP message ends inside its head")]
    Incomplete,
}

impl HttpRequest {
    /// The request as `message/http`.
    pub fn encode(&self) -> Vec<u8> {
        let mut message = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        finish(&mut message, &self.headers, &self.body);
        message
    }

    /// Reads a request [`Self::encode`] wrote.
    pub fn decode(message: &[u8]) -> Result<Self, MessageError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let head = parsed(request.parse(message))?;
        Ok(Self {
            method: request.method.unwrap_or_default().to_owned(),
            target: request.path.unwrap_or_default().to_owned(),
            headers: fields(request.headers),
            body: message[head..].to_vec(),
        })
    }
}

impl HttpResponse {
    /// The response as `message/http`.
    pub fn encode(&self) -> Vec<u8> {
        let reason =
            axum::http::StatusCode::from_u16(self.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let mut message = format!("HTTP/1.1 {} {reason}\r\n", self.status).into_bytes();
        finish(&mut message, &self.headers, &self.body);
        message
    }

    /// Reads a response [`Self::encode`] wrote.
    pub fn decode(message: &[u8]) -> Result<Self, MessageError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head = parsed(response.parse(message))?;
        Ok(Self {
            status: response.code.unwrap_or_default(),
            headers: fields(response.headers),
            body: message[head..].to_vec(),
        })
    }
}

fn finish(message: &mut Vec<u8>, headers: &Fields, body: &[u8]) {
    for (name, value) in headers {
        message.extend_from_slice(name.as_bytes());
        message.extend_from_slice(b": ");
        message.extend_from_slice(value);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(body);
}

fn parsed(status: httparse::Result<usize>) -> Result<usize, MessageError> {
    match status {
        Ok(httparse::Status::Complete(head)) => Ok(head),
        Ok(httparse::Status::Partial) => Err(MessageError::Incomplete),
        Err(err) => Err(MessageError::Malformed(err.to_string())),
    }
}

fn fields(headers: &[httparse::Header<'_>]) -> Fields {
    headers.iter().map(|header| (header.name.to_ascii_lowercase(), header.value.to_vec())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_comes_back_as_it_was_written_body_bytes_included() {
        let request = HttpRequest {
            method: "PATCH".to_owned(),
            target: "/a/b?x=1&y=%20".to_owned(),
            headers: vec![("x-one".to_owned(), b"1".to_vec()), ("x-one".to_owned(), b"two words".to_vec())],
            body: b"\r\n\r\nbinary\0body".to_vec(),
        };
        assert_eq!(HttpRequest::decode(&request.encode()), Ok(request));
    }

    #[test]
    fn a_response_comes_back_as_it_was_written_even_with_a_status_without_a_reason() {
        for status in [200, 418, 599] {
            let response =
                HttpResponse { status, headers: vec![("x".to_owned(), b"y".to_vec())], body: b"ok".to_vec() };
            assert_eq!(HttpResponse::decode(&response.encode()), Ok(response));
        }
    }

    #[test]
    fn a_cut_or_garbled_head_is_an_error() {
        assert_eq!(HttpResponse::decode(b"HTTP/1.1 200 OK\r\nx: y\r\n"), Err(MessageError::Incomplete));
        assert!(matches!(HttpRequest::decode(b"GET\0 / HTTP/1.1\r\n\r\n"), Err(MessageError::Malformed(_))));
    }

    #[test]
    fn the_tenant_key_and_connection_fields_do_not_travel() {
        for name in ["Authorization", "content-length", "Transfer-Encoding", "connection"] {
            assert!(!is_forwarded(name), "{name}");
        }
        assert!(is_forwarded("content-type") && is_forwarded("x-custom"));
    }
}
