//! The stock pusher (PRODUCT.md I5): every stock move queues the SKU's level for each channel that
//! sells it, due one `inventory_push_interval_s` later (0: at once); the pusher claims what is due,
//! channel by channel, and sends the latest levels through the channel's inventory API in batches.
//! A push that fails for a while is retried with backoff; a refusal is kept in the sync history and
//! the level goes out with the next stock move.

use rescind_connectors::channels::{ChannelConnector, ListingLevel, STOCK_PUSH_BATCH_MAX};
use rescind_connectors::CallError;
use rescind_domain::{SyncKind, SyncRecord, Timestamp};
use rescind_store::{new_id, now, PushBatch, PushOutcome, Store};
use std::hash::{Hash, Hasher};
use std::time::Duration;
use tokio::sync::watch;

/// Attempts of one push before it is given up (the level then goes out with the next move).
pub const PUSH_ATTEMPTS_MAX: u32 = 8;
/// The first retry waits this long; each next one twice as long, up to [`PUSH_RETRY_MAX_DELAY`].
const PUSH_RETRY_FIRST_DELAY: Duration = Duration::from_secs(1);
const PUSH_RETRY_MAX_DELAY: Duration = Duration::from_secs(300);
/// How often the pusher looks for due levels.
const PUSH_POLL: Duration = Duration::from_millis(200);
/// How long a claimed push is the pusher's own; after that, another process may take it.
const PUSH_LEASE: Duration = Duration::from_secs(120);

/// Runs the pusher until `shutdown` turns true.
pub async fn run_stock_pusher(store: Store, http: reqwest::Client, mut shutdown: watch::Receiver<bool>) {
    let owner = new_id("pusher");
    loop {
        if let Err(error) = push_due_levels(&store, &http, &owner).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "stock push failed unexpectedly; it runs again when its lease expires"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(PUSH_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Pushes every level that is due; answers how many channel calls were made.
pub async fn push_due_levels(store: &Store, http: &reqwest::Client, owner: &str) -> anyhow::Result<usize> {
    let lease_until = Timestamp::from_unix_micros(now().unix_micros() + PUSH_LEASE.as_micros() as i64);
    let mut calls = 0;
    for claimed in store.claim_stock_pushes(owner, lease_until).await? {
        let channel = store.channel(&claimed.shop_id, &claimed.channel_id).await?;
        for items in claimed.items.chunks(STOCK_PUSH_BATCH_MAX) {
            let batch = PushBatch {
                items: items.to_vec(),
                ..claimed.clone()
            };
            let levels: Vec<ListingLevel> = batch
                .items
                .iter()
                .map(|item| ListingLevel {
                    sku: item.sku.clone(),
                    external_id: item.external_id.clone(),
                    location_id: item.location_id.clone(),
                    available: u32::try_from(item.available.max(0)).unwrap_or(u32::MAX),
                })
                .collect();
            let sent = match &channel {
                None => Err(CallError::Misconfigured {
                    message: format!("the channel {} no longer exists", batch.channel_id),
                }),
                Some(channel) => match ChannelConnector::new(
                    channel.kind,
                    channel.base_url.as_deref(),
                    channel.credentials.as_deref(),
                    http.clone(),
                ) {
                    Ok(connector) => connector.push_stock(&levels, &idempotency_key(&batch)).await,
                    Err(error) => Err(error),
                },
            };
            calls += 1;
            let attempts = batch.items.iter().map(|item| item.attempts).max().unwrap_or(0) + 1;
            let (outcome, ok, message) = match sent {
                Ok(message) => (PushOutcome::Pushed, true, message),
                Err(error @ (CallError::Transient { .. } | CallError::Unknown { .. }))
                    if attempts < PUSH_ATTEMPTS_MAX =>
                {
                    let retry_at =
                        Timestamp::from_unix_micros(now().unix_micros() + retry_delay(attempts).as_micros() as i64);
                    let message = format!("{error}; attempt {attempts} of {PUSH_ATTEMPTS_MAX}, retried");
                    (PushOutcome::RetryAt(retry_at, error.to_string()), false, message)
                }
                Err(error) => {
                    let message = format!("{error}; not retried: the level goes out with the next stock move");
                    (PushOutcome::GaveUp(error.to_string()), false, message)
                }
            };
            let record = SyncRecord {
                at: now(),
                kind: SyncKind::InventoryPush,
                target: match &channel {
                    Some(channel) => format!("{} {}", channel.kind, channel.id),
                    None => batch.channel_id.clone(),
                },
                request: format!("set stock {}", describe_levels(&levels)),
                ok,
                message,
                fee: None,
            };
            store.finish_stock_push(&batch, &outcome, &record).await?;
        }
    }
    Ok(calls)
}

/// `TEA-001 = 9, CUP-002 = 0`, for people.
fn describe_levels(levels: &[ListingLevel]) -> String {
    levels
        .iter()
        .map(|level| format!("{} = {}", level.sku, level.available))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The same levels of the same moves give the same key, so a retry after a lost answer is a replay.
fn idempotency_key(batch: &PushBatch) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for item in &batch.items {
        (&item.sku, item.version, item.available).hash(&mut hasher);
    }
    format!("rescind-push-{}-{:016x}", batch.channel_id, hasher.finish())
}

fn retry_delay(attempts: u32) -> Duration {
    PUSH_RETRY_FIRST_DELAY
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
        .min(PUSH_RETRY_MAX_DELAY)
}
