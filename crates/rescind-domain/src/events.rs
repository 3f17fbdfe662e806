//! The events rescind tells other systems about (B4): each is one line of an order's history, named
//! for the outside world. The store writes an order's events in the same transaction as its history
//! (the outbox), so no event is lost and none is invented.

use crate::history::HistoryEntry;
use crate::named_enum;

named_enum! {
    /// What happened, as webhooks and the event stream name it.
    pub enum EventType {
        OrderImported => "order.imported",
        OrderCancelled => "order.cancelled",
        OrderLinesCancelled => "order.lines_cancelled",
        OrderModificationSynced => "order.modification_synced",
        CancellationCreated => "cancellation.created",
        CancellationCompleted => "cancellation.completed",
        CancellationFailed => "cancellation.failed",
        CancellationUndone => "cancellation.undone",
        CancellationNeedsAttention => "cancellation.needs_attention",
        CancellationRequestCreated => "cancellation.request_created",
        RefundCreated => "refund.created",
        StockRestocked => "stock.restocked",
        OutboundCreated => "outbound.created",
        OutboundCancelRequested => "outbound.cancel_requested",
        OutboundDeleted => "outbound.deleted",
        OutboundStatusChanged => "outbound.status_changed",
    }
}

/// The event a history line announces, if it is one: progress inside the workflow (a step pending, a
/// retry planned) stays in the history only.
pub fn event_type(entry: &HistoryEntry) -> Option<EventType> {
    let status = entry
        .data
        .iter()
        .find(|(key, _)| key == "status")
        .map(|(_, value)| value.as_ref());
    Some(match (entry.kind.as_ref(), status) {
        ("order.imported", _) => EventType::OrderImported,
        ("order.cancelled", _) => EventType::OrderCancelled,
        ("order.lines_cancelled", _) => EventType::OrderLinesCancelled,
        ("order.modified", _) => EventType::OrderModificationSynced,
        ("cancellation.created", _) => EventType::CancellationCreated,
        ("cancellation.completed", _) => EventType::CancellationCompleted,
        ("cancellation.failed", _) => EventType::CancellationFailed,
        ("cancellation.undone", _) => EventType::CancellationUndone,
        ("cancellation.needs_attention", _) => EventType::CancellationNeedsAttention,
        ("cancellation.requested", _) => EventType::CancellationRequestCreated,
        ("refund.recorded", _) => EventType::RefundCreated,
        ("step.restock", Some("succeeded")) => EventType::StockRestocked,
        ("outbound.created", _) => EventType::OutboundCreated,
        ("step.warehouse_cancel", Some("waiting")) => EventType::OutboundCancelRequested,
        ("step.warehouse_cancel", Some("succeeded")) => EventType::OutboundDeleted,
        ("outbound.status", _) => EventType::OutboundStatusChanged,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Timestamp};

    fn entry(kind: &'static str, status: Option<&str>) -> HistoryEntry {
        let entry = HistoryEntry::new(Timestamp::from_unix_micros(0), kind, &Actor::System, "x");
        match status {
            Some(status) => entry.with("status", status.to_owned()),
            None => entry,
        }
    }

    #[test]
    fn a_history_line_is_an_event_when_it_says_what_happened_not_what_is_planned() {
        assert_eq!(
            event_type(&entry("order.cancelled", None)),
            Some(EventType::OrderCancelled)
        );
        assert_eq!(
            event_type(&entry("refund.recorded", None)),
            Some(EventType::RefundCreated)
        );
        assert_eq!(
            event_type(&entry("step.restock", Some("succeeded"))),
            Some(EventType::StockRestocked)
        );
        assert_eq!(event_type(&entry("step.restock", Some("pending"))), None);
        assert_eq!(
            event_type(&entry("step.warehouse_cancel", Some("waiting"))),
            Some(EventType::OutboundCancelRequested)
        );
        assert_eq!(
            event_type(&entry("step.warehouse_cancel", Some("succeeded"))),
            Some(EventType::OutboundDeleted)
        );
        assert_eq!(event_type(&entry("step.refund", Some("succeeded"))), None);
        assert_eq!(event_type(&entry("cancellation.processing", None)), None);
    }

    #[test]
    fn every_event_type_has_a_history_line_that_announces_it() {
        let lines = [
            ("order.imported", None),
            ("order.cancelled", None),
            ("order.lines_cancelled", None),
            ("order.modified", None),
            ("cancellation.created", None),
            ("cancellation.completed", None),
            ("cancellation.failed", None),
            ("cancellation.undone", None),
            ("cancellation.needs_attention", None),
            ("cancellation.requested", None),
            ("refund.recorded", None),
            ("step.restock", Some("succeeded")),
            ("outbound.created", None),
            ("step.warehouse_cancel", Some("waiting")),
            ("step.warehouse_cancel", Some("succeeded")),
            ("outbound.status", None),
        ];
        let announced: Vec<EventType> = lines
            .iter()
            .filter_map(|(kind, status)| event_type(&entry(kind, *status)))
            .collect();
        assert_eq!(announced, EventType::ALL);
    }
}
