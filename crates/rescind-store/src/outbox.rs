// The outbox's readers and the webhooks (B4), `include!`d by each backend after `backend.rs`. Events
// are written by `insert_events` in `backend.rs`, inside the transaction of their change.

const WEBHOOK_COLUMNS: &str = "id, shop_id, url, events, secret, active, created_at";
const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_seq, event_type, order_id, status, attempts, \
    next_attempt_at, last_status_code, last_error, created_at, delivered_at";
const EVENT_COLUMNS: &str = "seq, id, shop_id, order_id, type, at, payload, change_id, line_index, order_status, \
    line_indexes";
/// [`EVENT_COLUMNS`] of the events table named `e` in a join.
const JOINED_EVENT_COLUMNS: &str = "e.seq, e.id AS event_row_id, e.shop_id, e.order_id AS event_order_id, e.type, e.at, \
    e.payload, e.change_id, e.line_index, e.order_status, e.line_indexes";

fn webhook_from_row(row: &<Db as Database>::Row) -> Result<crate::Webhook> {
    let events: String = row.try_get("events")?;
    Ok(crate::Webhook {
        id: row.try_get("id")?,
        shop_id: row.try_get("shop_id")?,
        url: row.try_get("url")?,
        events: events.split(' ').filter_map(EventType::parse).collect(),
        secret: row.try_get("secret")?,
        active: row.try_get("active")?,
        created_at: time(row.try_get("created_at")?),
    })
}

fn delivery_from_row(row: &<Db as Database>::Row) -> Result<crate::Delivery> {
    let status: String = row.try_get("status")?;
    let code: Option<i64> = row.try_get("last_status_code")?;
    let delivered_at: Option<i64> = row.try_get("delivered_at")?;
    Ok(crate::Delivery {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_seq: row.try_get("event_seq")?,
        event_type: row.try_get("event_type")?,
        order_id: row.try_get("order_id")?,
        status: crate::DeliveryStatus::parse(&status).with_context(|| format!("unknown delivery status {status}"))?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: time(row.try_get("next_attempt_at")?),
        last_status_code: code.and_then(|code| u16::try_from(code).ok()),
        last_error: row.try_get("last_error")?,
        created_at: time(row.try_get("created_at")?),
        delivered_at: delivered_at.map(time),
    })
}

/// Where the payload of an event that stored none comes from (migration 0013): its history line
/// (the row's number and the line's place) and its order's status then.
struct FromHistory {
    change_id: i64,
    line_index: i64,
    order_status: String,
}

/// An event as read: whole, or still to get its payload from its history line ([`with_payloads`]).
type ReadEvent = (crate::OutboxEvent, Option<FromHistory>);

fn events_from_row(row: &<Db as Database>::Row, events: &mut Vec<ReadEvent>) -> Result<()> {
    events_from_named_row(row, "id", "order_id", events)
}

/// The events of one outbox row (migration 0014): its one event as it stored it, or each event it
/// names by its history line — numbered from the row's number on, the first with the row's id.
fn events_from_named_row(
    row: &<Db as Database>::Row,
    id: &str,
    order_id: &str,
    events: &mut Vec<ReadEvent>,
) -> Result<()> {
    let seq: i64 = row.try_get("seq")?;
    let row_id: String = row.try_get(id)?;
    let shop_id: String = row.try_get("shop_id")?;
    let order_id: Option<String> = row.try_get(order_id)?;
    let types: String = row.try_get("type")?;
    let at = time(row.try_get("at")?);
    let payload: String = row.try_get("payload")?;
    let event = |seq: i64, id: String, event_type: &str, payload: serde_json::Value| crate::OutboxEvent {
        seq,
        id,
        shop_id: shop_id.clone(),
        order_id: order_id.clone(),
        event_type: event_type.to_owned(),
        at,
        payload,
    };
    if payload != PAYLOAD_FROM_HISTORY {
        let payload = serde_json::from_str(&payload).context("an outbox payload is not JSON")?;
        events.push((event(seq, row_id, &types, payload), None));
        return Ok(());
    }
    let change_id: Option<i64> = row.try_get("change_id")?;
    let change_id = change_id.context("an outbox event names no history row")?;
    let order_status: Option<String> = row.try_get("order_status")?;
    let order_status = order_status.context("an outbox event keeps no order status")?;
    let line_indexes: Option<String> = row.try_get("line_indexes")?;
    let line_indexes: Vec<i64> = match line_indexes {
        Some(indexes) => indexes
            .split(' ')
            .map(|index| index.parse().context("an outbox row names a line by no number"))
            .collect::<Result<_>>()?,
        None => {
            let line_index: Option<i64> = row.try_get("line_index")?;
            vec![line_index.context("an outbox event names no history line")?]
        }
    };
    let types: Vec<&str> = types.split(' ').collect();
    if types.len() != line_indexes.len() || line_indexes.len() > crate::OUTBOX_EVENTS_PER_ROW as usize {
        anyhow::bail!("the outbox row {row_id} names {} events and {} lines", types.len(), line_indexes.len());
    }
    for (place, (event_type, line_index)) in types.into_iter().zip(line_indexes).enumerate() {
        let from = FromHistory {
            change_id,
            line_index,
            order_status: order_status.clone(),
        };
        let seq = seq + i64::try_from(place)?;
        events.push((event(seq, event_id(&row_id, place), event_type, serde_json::Value::Null), Some(from)));
    }
    Ok(())
}

/// The events with their payloads: those that stored none get theirs from their history lines and
/// their orders' rows, read for all of them at once — the same JSON object an event stored before.
async fn with_payloads(connection: &mut Connection, read: Vec<ReadEvent>) -> Result<Vec<crate::OutboxEvent>> {
    let mut change_ids: Vec<i64> = read.iter().filter_map(|(_, from)| Some(from.as_ref()?.change_id)).collect();
    if change_ids.is_empty() {
        return Ok(read.into_iter().map(|(event, _)| event).collect());
    }
    change_ids.sort_unstable();
    change_ids.dedup();
    let mut lines_by_change: HashMap<i64, Vec<HistoryEntry>> = HashMap::new();
    let changes = order_changes_by_id(connection, &change_ids).await.context("failed to read the events' history")?;
    for (id, at, text) in changes {
        let mut lines = Vec::new();
        history_lines_from_json(&text, time(at), &mut lines)?;
        lines_by_change.insert(id, lines);
    }
    let order_ids: Vec<String> = read
        .iter()
        .filter(|(_, from)| from.is_some())
        .filter_map(|(event, _)| event.order_id.clone())
        .collect::<HashSet<String>>()
        .into_iter()
        .collect();
    let mut orders: HashMap<String, (String, Option<String>)> = HashMap::new();
    let select = "SELECT id, number, channel_order_id FROM orders WHERE id IN (".to_owned();
    for row in rows_by_id(connection, select, order_ids).await.context("failed to read the events' orders")? {
        orders.insert(row.try_get("id")?, (row.try_get("number")?, row.try_get("channel_order_id")?));
    }
    read.into_iter()
        .map(|(mut event, from)| {
            let Some(from) = from else { return Ok(event) };
            let line = usize::try_from(from.line_index)
                .ok()
                .and_then(|index| lines_by_change.get(&from.change_id)?.get(index))
                .with_context(|| format!("the history line of event {} is gone", event.id))?;
            let order_id = event.order_id.as_deref().context("an event of no order names a history line")?;
            let (number, channel_order_id) = orders
                .get(order_id)
                .with_context(|| format!("the order of event {} is gone", event.id))?;
            event.at = line.at;
            event.payload = serde_json::to_value(EventPayload {
                actor: &line.actor,
                channel_order_id: channel_order_id.as_deref(),
                data: history_data_map(&line.data),
                message: &line.message,
                order_id,
                order_number: number,
                order_status: &from.order_status,
            })
            .context("failed to build an event's payload")?;
            Ok(event)
        })
        .collect()
}

impl Backend {
    pub(crate) async fn create_webhook(&self, webhook: &crate::Webhook) -> Result<()> {
        let events: Vec<&str> = webhook.events.iter().map(|event| event.as_str()).collect();
        sqlx::query(
            "INSERT INTO webhooks (id, shop_id, url, events, secret, active, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&webhook.id)
        .bind(&webhook.shop_id)
        .bind(&webhook.url)
        .bind(events.join(" "))
        .bind(&webhook.secret)
        .bind(webhook.active)
        .bind(webhook.created_at.unix_micros())
        .execute(&mut *self.write_connection().await?)
        .await
        .context("failed to create a webhook")?;
        Ok(())
    }

    pub(crate) async fn webhooks(&self, shop_id: &str) -> Result<Vec<crate::Webhook>> {
        let rows = sqlx::query(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE shop_id = $1 ORDER BY created_at, id"))
            .bind(shop_id)
            .fetch_all(&self.read)
            .await
            .context("failed to read the webhooks")?;
        rows.iter().map(webhook_from_row).collect()
    }

    pub(crate) async fn webhook(&self, shop_id: &str, webhook_id: &str) -> Result<Option<crate::Webhook>> {
        let row = sqlx::query(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE shop_id = $1 AND id = $2"))
            .bind(shop_id)
            .bind(webhook_id)
            .fetch_optional(&self.read)
            .await
            .context("failed to read a webhook")?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// Stops a webhook: no new deliveries are queued for it, and those waiting are not sent.
    pub(crate) async fn deactivate_webhook(&self, shop_id: &str, webhook_id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE webhooks SET active = FALSE WHERE shop_id = $1 AND id = $2")
            .bind(shop_id)
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'the webhook was deleted' \
             WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(webhook_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done > 0)
    }

    /// A webhook's deliveries, newest event first; `cursor` is the last page's `next_cursor`.
    pub(crate) async fn deliveries(
        &self,
        webhook_id: &str,
        status: Option<crate::DeliveryStatus>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Page<crate::Delivery>> {
        let mut query = QueryBuilder::<Db>::new(format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = "));
        query.push_bind(webhook_id.to_owned());
        if let Some(status) = status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(cursor) = cursor {
            query.push(" AND event_seq < ").push_bind(cursor);
        }
        query.push(" ORDER BY event_seq DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = query.build().fetch_all(&self.read).await.context("failed to read the deliveries")?;
        let mut items = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more { items.last().map(|delivery| delivery.event_seq.to_string()) } else { None };
        Ok(Page { items, next_cursor })
    }

    /// Sends a delivery again from its first attempt, whatever became of it.
    pub(crate) async fn replay_delivery(&self, webhook_id: &str, delivery_id: &str, now: Timestamp) -> Result<Option<crate::Delivery>> {
        let row = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, lease_owner = NULL, \
             lease_expires_at = NULL WHERE webhook_id = $2 AND id = $3 RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(now.unix_micros())
        .bind(webhook_id)
        .bind(delivery_id)
        .fetch_optional(&mut *self.write_connection().await?)
        .await
        .context("failed to replay a delivery")?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// Takes the lease of due deliveries: of each webhook and order, only the earliest pending one, so an
    /// order's events arrive in the order they happened.
    pub(crate) async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::DueDelivery>> {
        let mut tx = self.begin_write().await?;
        let claimed: Vec<String> = sqlx::query_scalar(&format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_expires_at = $2 WHERE id IN \
             (SELECT d.id FROM webhook_deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
             AND (d.lease_expires_at IS NULL OR d.lease_expires_at < $3) AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id AND e.order_id = d.order_id \
             AND e.status = 'pending' AND e.event_seq < d.event_seq) ORDER BY d.event_seq LIMIT $4 {}) RETURNING id",
            DIALECT.skip_locked
        ))
        .bind(owner)
        .bind(lease_until.unix_micros())
        .bind(now.unix_micros())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .context("failed to claim webhook deliveries")?;
        let mut due = Vec::with_capacity(claimed.len());
        if !claimed.is_empty() {
            let mut query = QueryBuilder::<Db>::new(format!(
                "SELECT d.id, d.webhook_id, d.event_id, d.event_seq, d.event_type, d.order_id, d.status, d.attempts, \
                 d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at, \
                 w.url AS webhook_url, w.secret AS webhook_secret, {JOINED_EVENT_COLUMNS} FROM webhook_deliveries d \
                 JOIN webhooks w ON w.id = d.webhook_id JOIN outbox_events e ON e.seq = \
                 (SELECT MAX(r.seq) FROM outbox_events r WHERE r.seq <= d.event_seq) WHERE d.id IN ("
            ));
            push_in_list(&mut query, claimed);
            query.push(") ORDER BY d.event_seq");
            let mut claimed = Vec::new();
            let mut events = Vec::new();
            // Each delivery's event is one of its outbox row's (migration 0014): the row numbered last
            // at or before the event's number.
            let mut of_row = Vec::new();
            for row in query.build().fetch_all(&mut *tx).await.context("failed to read claimed deliveries")? {
                let delivery = delivery_from_row(&row)?;
                of_row.clear();
                events_from_named_row(&row, "event_row_id", "event_order_id", &mut of_row)?;
                let place = of_row
                    .iter()
                    .position(|(event, _)| event.seq == delivery.event_seq)
                    .with_context(|| format!("the event of delivery {} is gone", delivery.id))?;
                events.push(of_row.swap_remove(place));
                claimed.push((delivery, row.try_get("webhook_url")?, row.try_get("webhook_secret")?));
            }
            let events = with_payloads(&mut tx, events).await?;
            for ((delivery, url, secret), event) in claimed.into_iter().zip(events) {
                due.push(crate::DueDelivery { delivery, url, secret, event });
            }
        }
        tx.commit().await.context("failed to commit a delivery claim")?;
        Ok(due)
    }

    /// Records what became of a delivery `owner` holds; a delivery whose lease was taken over meanwhile
    /// is left to its new owner.
    pub(crate) async fn finish_delivery(
        &self,
        delivery_id: &str,
        owner: &str,
        outcome: &crate::DeliveryOutcome,
        now: Timestamp,
    ) -> Result<()> {
        let (status, code, error, next, delivered) = match outcome {
            crate::DeliveryOutcome::Delivered { status_code } => ("delivered", Some(*status_code), None, now, Some(now)),
            crate::DeliveryOutcome::Retry { status_code, error, at } => ("pending", *status_code, Some(error.as_str()), *at, None),
            crate::DeliveryOutcome::GaveUp { status_code, error } => ("failed", *status_code, Some(error.as_str()), now, None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status_code = $2, last_error = $3, \
             next_attempt_at = $4, delivered_at = $5, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $6 AND lease_owner = $7",
        )
        .bind(status)
        .bind(code.map(i64::from))
        .bind(error)
        .bind(next.unix_micros())
        .bind(delivered.map(|at| at.unix_micros()))
        .bind(delivery_id)
        .bind(owner)
        .execute(&mut *self.write_connection().await?)
        .await
        .context("failed to record a delivery")?;
        Ok(())
    }

    /// When the earliest pending delivery falls due (or its lease expires), for the deliverer's sleep.
    pub(crate) async fn next_delivery_due_at(&self) -> Result<Option<Timestamp>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_expires_at IS NOT NULL AND lease_expires_at > next_attempt_at \
             THEN lease_expires_at ELSE next_attempt_at END) FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(due.map(time))
    }

    /// Takes the lease of events not yet on the event stream, oldest first: of `limit` outbox rows
    /// and every event they carry.
    pub(crate) async fn claim_unpublished(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::OutboxEvent>> {
        let rows = sqlx::query(&format!(
            "UPDATE outbox_events SET publish_lease_owner = $1, publish_lease_expires_at = $2 WHERE seq IN \
             (SELECT seq FROM outbox_events WHERE published_at IS NULL AND (publish_lease_expires_at IS NULL \
             OR publish_lease_expires_at < $3) ORDER BY seq LIMIT $4 {}) RETURNING {EVENT_COLUMNS}",
            DIALECT.skip_locked
        ))
        .bind(owner)
        .bind(lease_until.unix_micros())
        .bind(now.unix_micros())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.write_connection().await?)
        .await
        .context("failed to claim events to publish")?;
        let mut read = Vec::with_capacity(rows.len());
        for row in &rows {
            events_from_row(row, &mut read)?;
        }
        let mut connection = self.read.acquire().await?;
        let mut events = with_payloads(&mut connection, read).await?;
        events.sort_by_key(|event| event.seq);
        Ok(events)
    }

    /// Marks published the outbox rows `owner` holds whose every event is among `seqs`, the events
    /// acknowledged — a row whose last event is (the publisher sends events in order and stops at the
    /// first failure). A row's last event is numbered its row's number plus the spaces in its `type`.
    pub(crate) async fn mark_published(&self, seqs: &[i64], owner: &str, now: Timestamp) -> Result<()> {
        for chunk in seqs.chunks(128) {
            // Each event's row is numbered as the event (written before migration 0014) or as the
            // multiple of sixteen at or before it.
            let mut rows: Vec<i64> = chunk
                .iter()
                .flat_map(|seq| [*seq, seq - seq.rem_euclid(crate::OUTBOX_EVENTS_PER_ROW)])
                .collect();
            rows.sort_unstable();
            rows.dedup();
            let mut query = QueryBuilder::<Db>::new("UPDATE outbox_events SET published_at = ");
            query.push_bind(now.unix_micros());
            query.push(", publish_lease_owner = NULL, publish_lease_expires_at = NULL WHERE publish_lease_owner = ");
            query.push_bind(owner.to_owned());
            query.push(" AND seq IN (");
            let mut list = query.separated(", ");
            for seq in rows {
                list.push_bind(seq);
            }
            query.push(") AND seq + LENGTH(type) - LENGTH(REPLACE(type, ' ', '')) IN (");
            let mut list = query.separated(", ");
            for seq in chunk {
                list.push_bind(*seq);
            }
            query.push(")");
            query.build().execute(&mut *self.write_connection().await?).await.context("failed to mark events published")?;
        }
        Ok(())
    }

    /// The shop's events after `after_seq`, oldest first, at most `limit`.
    pub(crate) async fn events(&self, shop_id: &str, after_seq: i64, limit: u32) -> Result<Vec<crate::OutboxEvent>> {
        // The row of the event after `after_seq` may be numbered up to fifteen before it (migration
        // 0014), and up to fifteen rows so numbered may hold no event after it: each row after holds
        // at least one.
        let reach = crate::OUTBOX_EVENTS_PER_ROW - 1;
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM outbox_events WHERE shop_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(shop_id)
        .bind(after_seq.saturating_sub(reach))
        .bind(i64::from(limit) + reach)
        .fetch_all(&self.read)
        .await
        .context("failed to read events")?;
        // A consumer pages by sequence number: it must never see an event a crash could still take
        // back, whose number a later event would then reuse.
        self.make_seen_durable().await?;
        let mut read = Vec::with_capacity(rows.len());
        for row in &rows {
            events_from_row(row, &mut read)?;
        }
        read.retain(|(event, _)| event.seq > after_seq);
        read.truncate(limit as usize);
        let mut connection = self.read.acquire().await?;
        with_payloads(&mut connection, read).await
    }

    /// Forgets what is older than [`crate::OUTBOX_RETENTION_S`]: finished deliveries, then events no
    /// delivery still needs. Answers how many rows went.
    pub(crate) async fn purge_outbox(&self, now: Timestamp) -> Result<u64> {
        let before = now.plus_seconds(-crate::OUTBOX_RETENTION_S).unix_micros();
        let deliveries = sqlx::query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1")
            .bind(before)
            .execute(&mut *self.write_connection().await?)
            .await
            .context("failed to purge old deliveries")?
            .rows_affected();
        // Events are numbered as they are written: the first one recent enough to keep, read forward
        // from the oldest (the rows read are the ones going), bounds what goes, with no index by time
        // (migration 0007). An event numbered after it but older, which another process wrote with
        // a later number, goes in a later purge.
        let kept_from: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM outbox_events WHERE at >= $1 ORDER BY seq LIMIT 1")
                .bind(before)
                .fetch_optional(&self.read)
                .await
                .context("failed to find the events to keep")?;
        // A row's events are numbered from its number on, at most sixteen of them (migration 0014).
        let events = sqlx::query(
            "DELETE FROM outbox_events WHERE seq < $1 AND at < $2 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.event_seq >= outbox_events.seq AND d.event_seq < outbox_events.seq + $3)",
        )
        .bind(kept_from.unwrap_or(i64::MAX))
        .bind(before)
        .bind(crate::OUTBOX_EVENTS_PER_ROW)
        .execute(&mut *self.write_connection().await?)
        .await
        .context("failed to purge old events")?
        .rows_affected();
        Ok(deliveries + events)
    }
}
