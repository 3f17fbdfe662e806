//! The warehouse's outbound request (PRODUCT.md §7): its statuses, how the order's shipment status
//! follows them, the settings of a warehouse integration, and the warehouse's reports (F1–F3, F5).

use crate::cancel::{continue_after_gate, CancellationStatus, StepKind, StepStatus};
use crate::history::{Actor, HistoryEntry};
use crate::ids::IdSource;
use crate::money::Money;
use crate::order::{
    FulfillmentStatus, Order, OrderChange, OrderStatus, SyncKind, SyncRecord, Warning, WorkflowSchedule,
};
use crate::time::Timestamp;

crate::named_enum! {
    /// The warehouse systems rescind speaks to.
    pub enum WarehouseKind {
        OpenLogi => "openlogi",
    }
}

crate::named_enum! {
    /// F1: OpenLogi's outbound statuses, plus `requested` (asked for, not yet confirmed by the
    /// warehouse) and `deleted` (deleted, or cancelled on request).
    pub enum OutboundStatus {
        Requested => "requested",
        Backordered => "backordered",
        Allocating => "allocating",
        Waiting => "waiting",
        Working => "working",
        Picking => "picking",
        Picked => "picked",
        Packed => "packed",
        Shipped => "shipped",
        Suspended => "suspended",
        ModifyRequest => "modify_request",
        CancelRequest => "cancel_request",
        Deleted => "deleted",
    }
}

impl OutboundStatus {
    /// F2: the outbound request can still be deleted (before confirmation).
    pub const fn deletable(self) -> bool {
        matches!(
            self,
            OutboundStatus::Backordered | OutboundStatus::Allocating | OutboundStatus::Waiting
        )
    }

    /// C4: the warehouse is working on it; only a cancellation request can stop it.
    pub const fn in_the_warehouses_hands(self) -> bool {
        matches!(
            self,
            OutboundStatus::Working
                | OutboundStatus::Picking
                | OutboundStatus::Picked
                | OutboundStatus::Suspended
                | OutboundStatus::ModifyRequest
        )
    }

    /// C4: the warehouse takes a cancellation request in this status (OpenLogi: picking, picked).
    pub const fn cancel_requestable(self) -> bool {
        matches!(self, OutboundStatus::Picking | OutboundStatus::Picked)
    }

    /// C5: from packed on, nothing stops the goods.
    pub const fn too_late(self) -> bool {
        matches!(self, OutboundStatus::Packed | OutboundStatus::Shipped)
    }

    /// The order's shipment status this outbound status means, when it means one.
    pub const fn fulfillment(self) -> Option<FulfillmentStatus> {
        match self {
            OutboundStatus::Backordered | OutboundStatus::Allocating => Some(FulfillmentStatus::AwaitingAllocation),
            OutboundStatus::Waiting => Some(FulfillmentStatus::AwaitingShipment),
            OutboundStatus::Working | OutboundStatus::Picking | OutboundStatus::Picked => {
                Some(FulfillmentStatus::InProgress)
            }
            OutboundStatus::Packed => Some(FulfillmentStatus::Packed),
            OutboundStatus::Shipped => Some(FulfillmentStatus::Shipped),
            OutboundStatus::Requested
            | OutboundStatus::Suspended
            | OutboundStatus::ModifyRequest
            | OutboundStatus::CancelRequest
            | OutboundStatus::Deleted => None,
        }
    }
}

/// The order's outbound request at its warehouse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub warehouse_id: String,
    /// The warehouse's id of it; `None` until the warehouse confirmed the creation.
    pub external_id: Option<String>,
    pub status: OutboundStatus,
    /// The fee of a cancel or modification request.
    pub fee: Option<Money>,
    /// Failed attempts to create it, and the last error.
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The settings of a warehouse integration (API.md `POST /warehouses`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarehouseSettings {
    /// C4: a cancel may still be asked for while the warehouse picks (with a fee).
    pub cancel_after_confirmation: bool,
    /// F4: recipient changes update the outbound request before confirmation.
    pub sync_modifications: bool,
    /// F4: recipient changes during picking go as a modification request (with a fee).
    pub modify_after_confirmation: bool,
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        WarehouseSettings {
            cancel_after_confirmation: false,
            sync_modifications: true,
            modify_after_confirmation: false,
        }
    }
}

/// What the warehouse reports (API.md `POST /warehouses/{id}/events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarehouseEvent {
    StatusChanged {
        status: OutboundStatus,
        message: Option<String>,
    },
    CancelRequestAnswered {
        accepted: bool,
        message: Option<String>,
    },
}

/// Why a warehouse report changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the order has no outbound request at this warehouse")]
    NoOutbound,
    #[error("no cancellation request is waiting for the warehouse's answer")]
    NoCancelRequest,
}

fn apply_status(order: &mut Order, status: OutboundStatus) {
    if let Some(outbound) = order.outbound.as_mut() {
        outbound.status = status;
    }
    if order.status == OrderStatus::Open {
        if let Some(fulfillment) = status.fulfillment() {
            order.fulfillment_status = fulfillment;
        }
    }
}

/// Applies a warehouse report: the shipment status follows the outbound status; an answer to a
/// cancellation request completes or blocks the warehouse step (F3). A `packed` or `shipped` for an
/// order cancelled here warns and asks an operator (the F3 race).
pub fn warehouse_event(
    order: &Order,
    event: &WarehouseEvent,
    ids: &mut dyn IdSource,
    now: Timestamp,
) -> Result<OrderChange, EventError> {
    let mut order = order.clone();
    if order.outbound.is_none() {
        return Err(EventError::NoOutbound);
    }
    let actor = Actor::System;
    let mut history = Vec::new();
    let mut refunds = Vec::new();
    let mut sync = Vec::new();
    let mut workflow = WorkflowSchedule::Unchanged;
    match event {
        WarehouseEvent::StatusChanged { status, message } => {
            let waiting_for_answer = order.cancellation.as_ref().is_some_and(|cancellation| {
                cancellation
                    .step(StepKind::WarehouseCancel)
                    .is_some_and(|step| step.status == StepStatus::Waiting)
            });
            apply_status(&mut order, *status);
            history.push(
                HistoryEntry::new(
                    now,
                    "outbound.status",
                    &actor,
                    format!(
                        "The warehouse reports the outbound request {status}{}.",
                        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                    ),
                )
                .with("status", status),
            );
            let cancelled_here = order.status == OrderStatus::Cancelled
                || order
                    .cancellation
                    .as_ref()
                    .is_some_and(|c| c.status == CancellationStatus::Processing);
            if status.too_late() && (cancelled_here || waiting_for_answer) {
                order.add_warning(Warning::ShippedAfterCancel);
                if let Some(cancellation) = order.cancellation.as_mut() {
                    cancellation.needs_attention = true;
                    cancellation.updated_at = now;
                }
                history.push(HistoryEntry::new(
                    now,
                    "warning.shipped_after_cancel",
                    &actor,
                    format!("The warehouse has {status} an order that is being cancelled or is cancelled here: the goods will reach the customer; arrange a refusal of delivery or a return."),
                ));
            }
        }
        WarehouseEvent::CancelRequestAnswered { accepted, message } => {
            let cancellation = order.cancellation.as_mut().ok_or(EventError::NoCancelRequest)?;
            let step = cancellation
                .steps
                .iter_mut()
                .find(|step| step.kind == StepKind::WarehouseCancel && step.status == StepStatus::Waiting)
                .ok_or(EventError::NoCancelRequest)?;
            step.updated_at = now;
            cancellation.updated_at = now;
            let note = message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            if *accepted {
                step.status = StepStatus::Succeeded;
                step.message = format!("the warehouse accepted the cancellation request{note}");
                order
                    .warnings
                    .retain(|warning| *warning != Warning::CancelRequestedMayShip);
                apply_status(&mut order, OutboundStatus::Deleted);
                history.push(HistoryEntry::new(
                    now,
                    "step.warehouse_cancel",
                    &actor,
                    "warehouse_cancel: the warehouse accepted the cancellation request; the goods will not ship.",
                ));
                sync.push(SyncRecord {
                    at: now,
                    kind: SyncKind::Cancel,
                    target: format!(
                        "warehouse {}",
                        order.outbound.as_ref().map(|o| o.warehouse_id.as_str()).unwrap_or("?")
                    ),
                    request: "answer to the cancellation request".to_owned(),
                    ok: true,
                    message: format!("accepted{note}"),
                    fee: None,
                });
                let (more, next) = continue_after_gate(&mut order, &actor, ids, now, &mut history);
                refunds = more;
                workflow = next;
            } else {
                step.status = StepStatus::Failed;
                step.message = format!("the warehouse rejected the cancellation request{note}; the goods will ship");
                step.last_error = Some(format!("rejected{note}"));
                cancellation.needs_attention = true;
                let cancellation_id = cancellation.id.clone();
                if let Some(status) = order.outbound.as_ref().map(|o| o.status) {
                    if status == OutboundStatus::CancelRequest {
                        // The warehouse goes on where it was; its next report tells where that is.
                        apply_status(&mut order, OutboundStatus::Picking);
                    }
                }
                history.push(
                    HistoryEntry::new(now, "cancellation.needs_attention", &actor, format!("The warehouse rejected the cancellation request{note}: the goods will ship. Arrange a refusal of delivery or a return."))
                        .with("cancellation_id", &cancellation_id),
                );
                sync.push(SyncRecord {
                    at: now,
                    kind: SyncKind::Cancel,
                    target: format!(
                        "warehouse {}",
                        order.outbound.as_ref().map(|o| o.warehouse_id.as_str()).unwrap_or("?")
                    ),
                    request: "answer to the cancellation request".to_owned(),
                    ok: false,
                    message: format!("rejected{note}"),
                    fee: None,
                });
                workflow = WorkflowSchedule::Finished;
            }
        }
    }
    order.updated_at = now;
    Ok(OrderChange {
        order,
        history,
        new_refunds: refunds,
        workflow,
        sync,
    })
}
