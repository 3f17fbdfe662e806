//! Publishing the outbox to NATS JetStream (B4), and the little of the NATS protocol that needs: the
//! text protocol over TCP (`CONNECT`, `SUB`, `HPUB`, `MSG`/`HMSG`, `PING`/`PONG`) and JetStream's
//! request subjects. Each event goes out with its id as `Nats-Msg-Id`, so the stream drops a repeat
//! (a publish whose acknowledgement was lost, a process that died before marking it published).

use anyhow::{anyhow, bail, Context, Result};
use rescind_domain::Timestamp;
use rescind_store::{new_id, now, Store};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The longest a server may take to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest message read from the server (JetStream answers and fetched events are far smaller).
const MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// How long the stream remembers a `Nats-Msg-Id` to drop repeats.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60);
/// Events claimed and published at a time.
const PUBLISH_BATCH_MAX: u32 = 256;
/// How long claimed events are one publisher's.
const PUBLISH_LEASE: Duration = Duration::from_secs(30);

/// Where events go: the server, the stream, and the first token of every subject
/// (`{subject_prefix}.{shop_id}.{event type}`).
#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    /// The longest sleep between two looks at the outbox.
    pub poll: Duration,
}

/// A message from the server.
#[derive(Debug)]
pub struct Message {
    pub subject: String,
    pub sid: u64,
    pub reply: Option<String>,
    /// The status line and headers of an `HMSG`, as sent.
    pub headers: Option<String>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The status code of a header-only status message (`NATS/1.0 404 No Messages`).
    fn status(&self) -> Option<u16> {
        let first = self.headers.as_deref()?.lines().next()?;
        first.strip_prefix("NATS/1.0")?.split_whitespace().next()?.parse().ok()
    }
}

/// One connection to a NATS server with JetStream.
pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    inbox: String,
    next_request: u64,
}

impl Connection {
    /// Connects to `nats://host:port` and subscribes to this connection's reply inbox.
    pub async fn connect(url: &str) -> Result<Connection> {
        let address = url.strip_prefix("nats://").unwrap_or(url).trim_end_matches('/');
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| anyhow!("NATS at {address} did not accept a connection in time"))?
            .with_context(|| format!("cannot connect to NATS at {address}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut connection = Connection {
            reader: BufReader::new(read),
            writer: write,
            inbox: format!("_INBOX.{}", new_id("rescind")),
            next_request: 0,
        };
        let info = connection.read_line().await?;
        if !info.starts_with("INFO ") {
            bail!("NATS at {address} did not introduce itself: {info}");
        }
        let connect = json!({"verbose": false, "pedantic": false, "headers": true, "no_responders": true,
                             "lang": "rust", "version": env!("CARGO_PKG_VERSION"), "protocol": 1, "echo": false});
        let greeting = format!("CONNECT {connect}\r\nSUB {}.* 1\r\nPING\r\n", connection.inbox);
        connection.writer.write_all(greeting.as_bytes()).await?;
        loop {
            match connection.read_line().await?.as_str() {
                "PONG" => return Ok(connection),
                line if line.starts_with("-ERR") => bail!("NATS refused the connection: {line}"),
                _ => {}
            }
        }
    }

    async fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(REQUEST_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| anyhow!("NATS did not answer in time"))??;
        if read == 0 {
            bail!("NATS closed the connection");
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// The next message, answering the server's pings meanwhile.
    async fn next_message(&mut self) -> Result<Message> {
        loop {
            let line = self.read_line().await?;
            let mut words = line.split_whitespace();
            match words.next() {
                Some("PING") => self.writer.write_all(b"PONG\r\n").await?,
                Some(operation @ ("MSG" | "HMSG")) => {
                    let words: Vec<&str> = words.collect();
                    let with_headers = operation == "HMSG";
                    let sizes = if with_headers { 2 } else { 1 };
                    if words.len() < 2 + sizes {
                        bail!("NATS sent a malformed message line: {line}");
                    }
                    let total: usize = words[words.len() - 1].parse()?;
                    let header_bytes: usize = if with_headers {
                        words[words.len() - 2].parse()?
                    } else {
                        0
                    };
                    if total > MESSAGE_BYTES_MAX || header_bytes > total {
                        bail!("NATS sent a message of {total} bytes");
                    }
                    let reply = (words.len() == 3 + sizes).then(|| words[2].to_owned());
                    let mut body = vec![0; total + 2];
                    tokio::time::timeout(REQUEST_TIMEOUT, self.reader.read_exact(&mut body))
                        .await
                        .map_err(|_| anyhow!("NATS did not send the whole message in time"))??;
                    body.truncate(total);
                    let payload = body.split_off(header_bytes);
                    return Ok(Message {
                        subject: words[0].to_owned(),
                        sid: words[1].parse()?,
                        reply,
                        headers: with_headers.then(|| String::from_utf8_lossy(&body).into_owned()),
                        payload,
                    });
                }
                Some(word) if word.starts_with("-ERR") => bail!("NATS reported an error: {line}"),
                _ => {}
            }
        }
    }

    /// Publishes to `subject` with headers, asking for the answer on a fresh reply subject; answers that
    /// subject.
    async fn send(&mut self, subject: &str, headers: &[(&str, &str)], payload: &[u8]) -> Result<String> {
        self.next_request += 1;
        let reply = format!("{}.{}", self.inbox, self.next_request);
        let mut header_block = String::from("NATS/1.0\r\n");
        for (name, value) in headers {
            header_block.push_str(&format!("{name}: {value}\r\n"));
        }
        header_block.push_str("\r\n");
        let mut frame = format!(
            "HPUB {subject} {reply} {} {}\r\n{header_block}",
            header_block.len(),
            header_block.len() + payload.len()
        )
        .into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.writer.write_all(&frame).await?;
        Ok(reply)
    }

    /// A request and its one answer.
    pub async fn request(&mut self, subject: &str, headers: &[(&str, &str)], payload: &[u8]) -> Result<Value> {
        let reply = self.send(subject, headers, payload).await?;
        loop {
            let message = self.next_message().await?;
            if message.subject != reply {
                continue;
            }
            if message.status() == Some(503) {
                bail!("nothing answers on {subject} (is JetStream enabled?)");
            }
            return serde_json::from_slice(&message.payload)
                .with_context(|| format!("{subject} answered with something else than JSON"));
        }
    }

    /// Creates the stream unless it exists, taking every subject under `subject_prefix`.
    pub async fn ensure_stream(&mut self, stream: &str, subject_prefix: &str) -> Result<()> {
        let info = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), &[], b"").await?;
        if info.get("error").is_none() {
            return Ok(());
        }
        let config = json!({"name": stream, "subjects": [format!("{subject_prefix}.>")], "storage": "file",
                            "duplicate_window": DUPLICATE_WINDOW.as_nanos() as u64});
        let created = self
            .request(
                &format!("$JS.API.STREAM.CREATE.{stream}"),
                &[],
                config.to_string().as_bytes(),
            )
            .await?;
        match created.get("error") {
            // Another process created it meanwhile.
            Some(error) if error["err_code"] == 10058 => Ok(()),
            Some(error) => bail!("JetStream did not create the stream {stream}: {error}"),
            None => Ok(()),
        }
    }

    /// Publishes one message to the stream with its id; answers whether the stream already had it.
    pub async fn publish(&mut self, subject: &str, message_id: &str, payload: &[u8]) -> Result<bool> {
        let ack = self.request(subject, &[("Nats-Msg-Id", message_id)], payload).await?;
        if let Some(error) = ack.get("error") {
            bail!("JetStream refused {message_id}: {error}");
        }
        Ok(ack["duplicate"].as_bool().unwrap_or(false))
    }

    /// Every message of the stream from its start, read once through a new consumer that needs no
    /// acknowledgements: `(subject, Nats-Msg-Id, payload)`.
    pub async fn read_stream(&mut self, stream: &str) -> Result<Vec<(String, String, Vec<u8>)>> {
        let config = json!({"stream_name": stream, "config": {"ack_policy": "none", "deliver_policy": "all",
                            "inactive_threshold": 60_000_000_000_u64}});
        let consumer = self
            .request(
                &format!("$JS.API.CONSUMER.CREATE.{stream}"),
                &[],
                config.to_string().as_bytes(),
            )
            .await?;
        let name = consumer["name"]
            .as_str()
            .ok_or_else(|| anyhow!("JetStream made no consumer: {consumer}"))?
            .to_owned();
        let mut messages = Vec::new();
        loop {
            let pull = json!({"batch": 256, "no_wait": true});
            let reply = self
                .send(
                    &format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"),
                    &[],
                    pull.to_string().as_bytes(),
                )
                .await?;
            let mut got = 0;
            loop {
                let message = self.next_message().await?;
                if message.subject == reply && message.status().is_some() {
                    break;
                }
                if message.sid != 1 {
                    continue;
                }
                let id = message
                    .headers
                    .as_deref()
                    .and_then(|headers| headers.lines().find_map(|line| line.strip_prefix("Nats-Msg-Id: ")))
                    .unwrap_or_default()
                    .to_owned();
                messages.push((message.subject, id, message.payload));
                got += 1;
            }
            if got == 0 {
                return Ok(messages);
            }
        }
    }
}

/// Publishes the outbox to the stream until `shutdown` turns true; reconnects after any failure.
pub async fn run_publisher(store: Store, config: StreamConfig, mut shutdown: watch::Receiver<bool>) {
    let owner = new_id("publisher");
    let mut connection: Option<Connection> = None;
    let mut failures: u32 = 0;
    loop {
        if connection.is_none() {
            match Connection::connect(&config.url).await {
                Ok(mut connected) => match connected.ensure_stream(&config.stream, &config.subject_prefix).await {
                    Ok(()) => connection = Some(connected),
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "the event stream is not ready"),
                },
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot reach NATS; events wait in the outbox"
                ),
            }
        }
        let mut published = 0;
        if let Some(active) = connection.as_mut() {
            match publish_due(&store, active, &config, &owner).await {
                Ok(count) => {
                    published = count;
                    failures = 0;
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "publishing events failed; reconnecting");
                    connection = None;
                }
            }
        }
        if connection.is_none() {
            failures = failures.saturating_add(1);
        }
        if published > 0 {
            continue;
        }
        let pause = if failures == 0 {
            config.poll
        } else {
            config.poll * failures.min(25)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Publishes the events waiting in the outbox, oldest first; answers how many.
pub async fn publish_due(
    store: &Store,
    connection: &mut Connection,
    config: &StreamConfig,
    owner: &str,
) -> Result<usize> {
    let lease_until = Timestamp::from_unix_micros(now().unix_micros() + PUBLISH_LEASE.as_micros() as i64);
    let events = store.claim_unpublished(owner, lease_until, PUBLISH_BATCH_MAX).await?;
    let mut published = Vec::with_capacity(events.len());
    let mut failure = None;
    for event in &events {
        let subject = format!("{}.{}.{}", config.subject_prefix, event.shop_id, event.event_type);
        let body = crate::webhooks::event_envelope(event).to_string();
        match connection.publish(&subject, &event.id, body.as_bytes()).await {
            Ok(_) => published.push(event.seq),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    store.mark_published(&published, owner).await?;
    match failure {
        Some(error) => Err(error),
        None => Ok(published.len()),
    }
}
