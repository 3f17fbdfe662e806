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
                .with("status", status.as_str()),
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
                        .with("cancellation_id", cancellation_id.clone()),
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
        stock_moves: Vec::new(),
    })
}

/// What reached the warehouse of an order change (F4; API.md `modification_sync`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModificationSync {
    /// The outbound request was updated (before confirmation).
    Applied { message: String },
    /// A modification request was sent (during picking), for `fee`.
    Requested { fee: Option<Money>, message: String },
    /// The change stays here: the settings say so, it is too late, or the warehouse said no.
    NotSynced { message: String },
    /// No outbound request exists for it to reach.
    NotApplicable { message: String },
}

impl ModificationSync {
    pub fn status(&self) -> &'static str {
        match self {
            ModificationSync::Applied { .. } => "applied",
            ModificationSync::Requested { .. } => "requested",
            ModificationSync::NotSynced { .. } => "not_synced",
            ModificationSync::NotApplicable { .. } => "not_applicable",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ModificationSync::Applied { message }
            | ModificationSync::Requested { message, .. }
            | ModificationSync::NotSynced { message }
            | ModificationSync::NotApplicable { message } => message,
        }
    }
}

/// How a recipient change goes to the warehouse (F4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModificationRoute {
    /// Update the outbound request (before confirmation, `sync_modifications` on).
    Update { external_id: String },
    /// Send a modification request with a fee (during picking, `modify_after_confirmation` on).
    Request { external_id: String },
    /// Nothing is sent, for this reason.
    Stay(ModificationSync),
}

/// Decides how a change of the order's customer or address reaches its warehouse (F4).
pub fn plan_modification(order: &Order, settings: Option<WarehouseSettings>) -> ModificationRoute {
    let (Some(outbound), Some(settings)) = (order.outbound.as_ref(), settings) else {
        return ModificationRoute::Stay(ModificationSync::NotApplicable {
            message: "no outbound request is at a warehouse for this order".to_owned(),
        });
    };
    let Some(external_id) = outbound
        .external_id
        .clone()
        .filter(|_| outbound.status != OutboundStatus::Deleted)
    else {
        return ModificationRoute::Stay(ModificationSync::NotApplicable {
            message: "the outbound request is not at the warehouse".to_owned(),
        });
    };
    let status = outbound.status;
    if status.deletable() {
        if settings.sync_modifications {
            ModificationRoute::Update { external_id }
        } else {
            ModificationRoute::Stay(ModificationSync::NotSynced {
                message: "the warehouse integration does not sync modifications; change the outbound request at the warehouse by hand".to_owned(),
            })
        }
    } else if matches!(
        status,
        OutboundStatus::Working | OutboundStatus::Picking | OutboundStatus::Picked
    ) {
        if settings.modify_after_confirmation {
            ModificationRoute::Request { external_id }
        } else {
            ModificationRoute::Stay(ModificationSync::NotSynced {
                message: format!("the warehouse is working on the order ({status}) and the integration sends no modification requests after confirmation; ask the warehouse directly"),
            })
        }
    } else {
        ModificationRoute::Stay(ModificationSync::NotSynced {
            message: format!("the outbound request is {status}: too late for the change to reach the warehouse; the goods go to the old address"),
        })
    }
}

/// Why an order cannot be changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModifyError {
    #[error("order {number} is {status}; only an open order can be changed")]
    NotOpen { number: String, status: OrderStatus },
}

/// Changes the order's customer and shipping address (F4), recording what reached the warehouse.
/// Items are never changed this way.
pub fn modify_order(
    order: &Order,
    customer: Option<crate::order::Customer>,
    shipping_address: Option<crate::order::Address>,
    sync: &ModificationSync,
    actor: &Actor,
    now: Timestamp,
) -> Result<OrderChange, ModifyError> {
    if order.status != OrderStatus::Open {
        return Err(ModifyError::NotOpen {
            number: order.number.clone(),
            status: order.status,
        });
    }
    let mut order = order.clone();
    let mut changed = Vec::new();
    if let Some(customer) = customer {
        order.customer = customer;
        changed.push("customer");
    }
    if let Some(address) = shipping_address {
        order.shipping_address = address;
        changed.push("shipping_address");
    }
    let mut sync_records = Vec::new();
    if let ModificationSync::Requested { fee, .. } = sync {
        if let Some(outbound) = order.outbound.as_mut() {
            outbound.status = OutboundStatus::ModifyRequest;
            outbound.fee = *fee;
        }
    }
    if matches!(
        sync,
        ModificationSync::Applied { .. } | ModificationSync::Requested { .. }
    ) || (matches!(sync, ModificationSync::NotSynced { .. }) && order.outbound.is_some())
    {
        sync_records.push(SyncRecord {
            at: now,
            kind: SyncKind::Modify,
            target: format!(
                "warehouse {}",
                order.outbound.as_ref().map(|o| o.warehouse_id.as_str()).unwrap_or("?")
            ),
            request: format!("change the recipient ({})", changed.join(", ")),
            ok: matches!(
                sync,
                ModificationSync::Applied { .. } | ModificationSync::Requested { .. }
            ),
            message: sync.message().to_owned(),
            fee: match sync {
                ModificationSync::Requested { fee, .. } => *fee,
                _ => None,
            },
        });
    }
    let history = vec![HistoryEntry::new(
        now,
        "order.modified",
        actor,
        format!(
            "Order changed ({}); warehouse: {} — {}",
            changed.join(", "),
            sync.status(),
            sync.message()
        ),
    )
    .with("modification_sync", sync.status())];
    order.updated_at = now;
    Ok(OrderChange {
        order,
        history,
        new_refunds: Vec::new(),
        workflow: WorkflowSchedule::Unchanged,
        sync: sync_records,
        stock_moves: Vec::new(),
    })
}
