//! Delivering the outbox's events to the shops' webhooks (B4): signed with HMAC-SHA256 over the
//! timestamp and the body, retried with backoff, each order's events in the order they happened
//! (the store hands out only the earliest pending delivery of an order), every attempt recorded.

use rescind_connectors::encoding::{hex, hmac_sha256};
use rescind_domain::{RetryPolicy, Timestamp};
use rescind_store::{new_id, now, DeliveryOutcome, DueDelivery, OutboxEvent, Store};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

/// The header that carries a delivery's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub const SIGNATURE_HEADER: &str = "X-Rescind-Signature";
/// Deliveries sent at once by one process.
pub const DELIVERIES_IN_FLIGHT_MAX: u32 = 32;
/// The longest answer of a receiver that is read (its text goes into the delivery log).
const ANSWER_EXCERPT_CHARS: usize = 200;

/// How deliveries are retried and how often the outbox is looked at.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryConfig {
    pub retry: RetryPolicy,
    /// The longest wait for a receiver's answer.
    pub timeout: Duration,
    /// How long a claimed delivery is one process's; longer than `timeout`.
    pub lease: Duration,
    /// The longest sleep between two looks at the outbox (another process may have written events).
    pub poll: Duration,
    /// Whether webhooks may point at loopback, private or link-local addresses. Off by default: on a
    /// platform serving many shops, a shop must not reach the operator's internal network through
    /// rescind. On for a single merchant's own receivers inside their network.
    pub allow_private_targets: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            // 12 attempts over about two hours: 1 s, 2 s, 4 s … capped at 30 minutes.
            retry: RetryPolicy {
                attempts_max: 12,
                delay_base_ms: 1_000,
                delay_max_ms: 30 * 60 * 1_000,
            },
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            allow_private_targets: false,
        }
    }
}

/// RFC 3339 UTC, e.g. `2026-11-22T10:00:00.123456Z`: the one rendering of a time on the wire, for the
/// API's answers and the events alike.
pub fn rfc3339(at: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.unix_micros()) * 1000)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An event as receivers get it: the same bytes on every attempt and every replay.
pub fn event_envelope(event: &OutboxEvent) -> Value {
    json!({
        "id": event.id,
        "type": event.event_type,
        "created_at": rfc3339(event.at),
        "shop_id": event.shop_id,
        "sequence": event.seq,
        "data": event.payload,
    })
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp` (Unix seconds). A receiver
/// recomputes the HMAC over `"{t}.{body}"` with the webhook's secret, compares in constant time, and
/// refuses timestamps far from its clock (replays).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex(&mac))
}

/// Whether an address is one a webhook may be sent to without `allow_private_targets`: not loopback,
/// private, link-local, shared (CGNAT), unspecified, broadcast, multicast or documentation space.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [first, second, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || first == 0
                || (first == 100 && (64..128).contains(&second)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

/// Why a webhook URL may not be used without `allow_private_targets`, judged by its host as written:
/// an address literal that is not public, or `localhost`. Names are checked again when resolved.
pub fn private_target(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(address) if !is_public(address) => Some(format!("{address} is not a public address")),
        Ok(_) => None,
        Err(_) if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") => {
            Some(format!("{host} is this machine"))
        }
        Err(_) => None,
    }
}

/// Resolves names to their public addresses only, so a name pointing inside (or rebinding to) a
/// private network is not reached.
struct PublicAddressesOnly;

impl reqwest::dns::Resolve for PublicAddressesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|address| is_public(address.ip())).collect();
            if public.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to no public address").into();
                return Err(refused);
            }
            let addresses: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}

/// The client deliveries go out with: no redirects (a receiver cannot bounce a signed event elsewhere),
/// and unless private targets are allowed, names resolved to public addresses only.
pub fn delivery_client(config: &DeliveryConfig) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.timeout.min(Duration::from_secs(5)))
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if !config.allow_private_targets {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicAddressesOnly));
    }
    builder.build().expect("the HTTP client builds")
}

/// Delivers due events until `shutdown` turns true.
pub async fn run_deliverer(store: Store, config: DeliveryConfig, mut shutdown: watch::Receiver<bool>) {
    let owner = new_id("deliverer");
    let client = delivery_client(&config);
    loop {
        match deliver_due(&store, &client, &owner, config).await {
            Ok(sent) if sent > 0 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "webhook delivery failed unexpectedly; it runs again"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(config.poll) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Sends every delivery that is due now, at most [`DELIVERIES_IN_FLIGHT_MAX`] at once; answers how
/// many were sent.
pub async fn deliver_due(
    store: &Store,
    client: &reqwest::Client,
    owner: &str,
    config: DeliveryConfig,
) -> anyhow::Result<usize> {
    let lease_micros = i64::try_from(config.lease.as_micros()).unwrap_or(i64::MAX);
    let lease_until = Timestamp::from_unix_micros(now().unix_micros().saturating_add(lease_micros));
    let due = store
        .claim_deliveries(owner, lease_until, DELIVERIES_IN_FLIGHT_MAX)
        .await?;
    let count = due.len();
    let mut sending = tokio::task::JoinSet::new();
    for delivery in due {
        let (store, client, owner) = (store.clone(), client.clone(), owner.to_owned());
        sending.spawn(async move {
            let outcome = match reqwest::Url::parse(&delivery.url).ok().and_then(|url| private_target(&url)) {
                Some(reason) if !config.allow_private_targets => DeliveryOutcome::GaveUp {
                    status_code: None,
                    error: format!("not sent: {reason}, and private targets are not allowed"),
                },
                _ => attempt(&client, &delivery, config.retry).await,
            };
            if let Err(error) = store.finish_delivery(&delivery.delivery.id, &owner, &outcome).await {
                tracing::warn!(error = format!("{error:#}"), delivery = %delivery.delivery.id, "failed to record a delivery");
            }
        });
    }
    while sending.join_next().await.is_some() {}
    Ok(count)
}

/// One attempt of one delivery.
async fn attempt(client: &reqwest::Client, due: &DueDelivery, retry: RetryPolicy) -> DeliveryOutcome {
    let body = event_envelope(&due.event).to_string();
    let timestamp = now().unix_micros() / 1_000_000;
    let sent = client
        .post(&due.url)
        .header("content-type", "application/json")
        .header("user-agent", "rescind-webhooks")
        .header(SIGNATURE_HEADER, signature(&due.secret, timestamp, &body))
        .header("X-Rescind-Event", &due.event.event_type)
        .header("X-Rescind-Event-Id", &due.event.id)
        .header("X-Rescind-Delivery", &due.delivery.id)
        // Receivers that keep keys can drop a repeat: every attempt and replay carries the event's id.
        .header("Idempotency-Key", &due.event.id)
        .body(body)
        .send()
        .await;
    let (status_code, error) = match sent {
        Ok(answer) if answer.status().is_success() => {
            return DeliveryOutcome::Delivered {
                status_code: answer.status().as_u16(),
            }
        }
        Ok(answer) => {
            let status = answer.status();
            let text: String = answer
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(ANSWER_EXCERPT_CHARS)
                .collect();
            (Some(status.as_u16()), format!("the receiver answered {status}: {text}"))
        }
        Err(error) if error.is_timeout() => (None, "the receiver did not answer in time".to_owned()),
        Err(error) => {
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                reason.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            (None, format!("the receiver could not be reached: {reason}"))
        }
    };
    let attempts = due.delivery.attempts + 1;
    match retry.retry_at(attempts, rand::random::<f64>(), now()) {
        Some(at) => DeliveryOutcome::Retry { status_code, error, at },
        None => DeliveryOutcome::GaveUp {
            status_code,
            error: format!("{error} (gave up after {attempts} attempts)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        assert!(private_target(&url("http://127.0.0.1:9/hooks")).is_some());
        assert!(private_target(&url("http://[::1]/hooks")).is_some());
        assert!(private_target(&url("http://localhost/hooks")).is_some());
        assert!(private_target(&url("https://example.com/hooks")).is_none());
    }

    #[test]
    fn a_signature_is_the_hmac_of_the_timestamp_and_the_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }
}
