//! The measured runs' HTTP/1.1 client: one keep-alive connection per client, each request written
//! and its answer read on that connection by the client's own task.
//!
//! A general client (reqwest, as the setup and the imports use) hands every request to the
//! connection's own task and back through channels, and checks a pooled connection out under a
//! lock: 37 µs of CPU per cancel on this machine — on the two cores the server runs on. This
//! one writes the request and reads the answer in place (status line, `Content-Length` or chunked
//! body), so the clients take less of the CPU the server is measured on. It speaks only what
//! `rescind serve` answers; anything else is an error, never a guess.

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most bytes of an answer's status line and headers.
const HEAD_MAX: usize = 16 * 1024;
/// The most bytes of an answer's body (an order's body is a few kilobytes).
const BODY_MAX: usize = 4 * 1024 * 1024;

/// One keep-alive connection to a server, opened when first used and again after the server closed it.
pub(super) struct Wire {
    /// `host:port`.
    authority: String,
    stream: Option<TcpStream>,
    /// Bytes read and not yet consumed.
    read: Vec<u8>,
    request: Vec<u8>,
}

/// An answer: its status code and its body.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

impl Wire {
    /// A connection to the server at `base` (`http://host:port`).
    pub(super) fn to(base: &str) -> Result<Wire> {
        let authority = base
            .strip_prefix("http://")
            .with_context(|| format!("not an http:// address: {base}"))?
            .trim_end_matches('/')
            .to_owned();
        Ok(Wire {
            authority,
            stream: None,
            read: Vec::with_capacity(8 * 1024),
            request: Vec::with_capacity(1024),
        })
    }

    /// Sends `method path`, with `token` as bearer, `idempotency_key` and `body` as JSON when given, and
    /// reads the answer.
    pub(super) async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Answer> {
        self.request.clear();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.authority);
        self.request.extend_from_slice(head.as_bytes());
        if let Some(token) = token {
            self.request
                .extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
        }
        if let Some(key) = idempotency_key {
            self.request
                .extend_from_slice(format!("Idempotency-Key: {key}\r\n").as_bytes());
        }
        if let Some(body) = body {
            let length = format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
            self.request.extend_from_slice(length.as_bytes());
        }
        self.request.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            self.request.extend_from_slice(body);
        }
        let stream = match self.stream.as_mut() {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(&self.authority)
                    .await
                    .with_context(|| format!("failed to connect to {}", self.authority))?;
                stream.set_nodelay(true)?;
                self.read.clear();
                self.stream.insert(stream)
            }
        };
        stream.write_all(&self.request).await?;
        let (answer, keep) = read_answer(stream, &mut self.read).await?;
        if !keep {
            self.stream = None;
        }
        Ok(answer)
    }
}

/// Reads one answer from `stream` (`read` holds what came before it); answers it and whether the
/// connection stays open.
async fn read_answer(stream: &mut TcpStream, read: &mut Vec<u8>) -> Result<(Answer, bool)> {
    let head_end = loop {
        if let Some(end) = find(read, b"\r\n\r\n") {
            break end + 4;
        }
        if read.len() > HEAD_MAX {
            bail!("an answer's head is over {HEAD_MAX} bytes");
        }
        fill(stream, read).await?;
    };
    let head = std::str::from_utf8(&read[..head_end]).context("an answer's head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP/1.1 status line: {status_line:?}"))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .context("a Content-Length that is not a number")?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep = !value.eq_ignore_ascii_case("close");
        }
    }
    read.drain(..head_end);
    let body = match (length, chunked) {
        (_, true) => read_chunked(stream, read).await?,
        (Some(length), false) => {
            if length > BODY_MAX {
                bail!("an answer's body of {length} bytes is over {BODY_MAX}");
            }
            fill_to(stream, read, length).await?;
            read.drain(..length).collect()
        }
        (None, false) => bail!("an answer with neither Content-Length nor chunked encoding"),
    };
    Ok((Answer { status, body }, keep))
}

/// A chunked body, its chunks joined.
async fn read_chunked(stream: &mut TcpStream, read: &mut Vec<u8>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = first_line_end(stream, read).await?;
        let size_text = std::str::from_utf8(&read[..line_end]).context("a chunk size that is not UTF-8")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("not a chunk size: {size_text:?}"))?;
        read.drain(..line_end + 2);
        if body.len() + size > BODY_MAX {
            bail!("an answer's body is over {BODY_MAX} bytes");
        }
        if size == 0 {
            // Trailers, if any, each on its line; then the empty line that ends the body.
            loop {
                let end = first_line_end(stream, read).await?;
                read.drain(..end + 2);
                if end == 0 {
                    return Ok(body);
                }
            }
        }
        // The chunk and the line end after it.
        fill_to(stream, read, size + 2).await?;
        body.extend_from_slice(&read[..size]);
        read.drain(..size + 2);
    }
}

/// Reads what the stream has into `read`; an error once the server closed it.
async fn fill(stream: &mut TcpStream, read: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let count = stream.read(&mut chunk).await?;
    if count == 0 {
        bail!("the server closed the connection in the middle of an answer");
    }
    read.extend_from_slice(&chunk[..count]);
    Ok(())
}

/// Reads until `read` holds at least `length` bytes.
async fn fill_to(stream: &mut TcpStream, read: &mut Vec<u8>, length: usize) -> Result<()> {
    while read.len() < length {
        fill(stream, read).await?;
    }
    Ok(())
}

/// Where the first line in `read` ends (its `\r\n`), reading until there is one.
async fn first_line_end(stream: &mut TcpStream, read: &mut Vec<u8>) -> Result<usize> {
    loop {
        if let Some(end) = find(read, b"\r\n") {
            return Ok(end);
        }
        fill(stream, read).await?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request read with the next of `answers`, verbatim.
    async fn serving(answers: Vec<&'static [u8]>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("a client");
            let mut buffer = vec![0u8; 64 * 1024];
            for answer in answers {
                let _ = socket.read(&mut buffer).await.expect("a request");
                socket.write_all(answer).await.expect("an answer");
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn reads_answers_with_a_length_and_chunked_ones_on_one_connection() {
        let base = serving(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let mut wire = Wire::to(&base).expect("an address");
        let first = wire.send("GET", "/healthz", None, None, None).await.expect("an answer");
        assert_eq!((first.status, first.body.as_slice()), (200, &b"hello"[..]));
        let second = wire
            .send("POST", "/x", Some("t"), Some("key-1"), Some(b"{}"))
            .await
            .expect("an answer");
        assert_eq!((second.status, second.body.as_slice()), (202, &b"abcde"[..]));
        let third = wire.send("GET", "/y", Some("t"), None, None).await.expect("an answer");
        assert_eq!((third.status, third.body.len()), (404, 0));
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_an_error_not_a_guess() {
        let base = serving(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]).await;
        let mut wire = Wire::to(&base).expect("an address");
        assert!(wire.send("GET", "/healthz", None, None, None).await.is_err());
    }
}
