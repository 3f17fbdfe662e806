//! Undoing a cancellation (PRODUCT.md §5, C6).

use crate::cancel::{CancelScope, CancellationStatus};
use crate::channel::ChannelKind;
use crate::history::{Actor, HistoryEntry};
use crate::inventory::{StockMove, StockMoveKind};
use crate::money::{Currency, Money};
use crate::order::{FinancialStatus, FulfillmentStatus, Order, OrderChange, OrderStatus, WorkflowSchedule};
use crate::refund::RefundMethod;
use crate::time::Timestamp;
use crate::warehouse::OutboundStatus;

/// Why a cancellation cannot be undone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UndoError {
    #[error("order {number} is not cancelled; there is nothing to undo")]
    NotCancelled { number: String },
    #[error("the cancellation of order {number} is still being carried out; undo it once it has finished")]
    InProgress { number: String },
    /// C6.
    #[error("order {number} was cancelled at {kind}; a marketplace cancellation is final and cannot be undone")]
    Irreversible { number: String, kind: ChannelKind },
    #[error("the payment must be authorized again before the undo")]
    ReauthorizationMissing,
    /// B1: lines cancelled on their own were refunded and restocked by their share; putting them back
    /// is a new order, not an undo.
    #[error("order {number} had lines cancelled on their own; a cancellation that covered only part of the order, or followed one, cannot be undone")]
    PartiallyCancelled { number: String },
}

/// A new authorization the payment provider must give before an undo (U3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reauthorization {
    pub provider_id: String,
    /// The original payment, whose payment method is charged again.
    pub reference: String,
    pub amount: Money,
    pub currency: Currency,
    pub idempotency_key: String,
}

/// Checks an undo is allowed (U1, C6) and says whether the payment must be authorized again first
/// (U3: the authorization was voided, or the card was refunded).
pub fn plan_undo(order: &Order) -> Result<Option<Reauthorization>, UndoError> {
    let number = order.number.clone();
    let cancellation = order
        .cancellation
        .as_ref()
        .ok_or(UndoError::NotCancelled { number: number.clone() })?;
    match cancellation.status {
        CancellationStatus::AwaitingRefund | CancellationStatus::Completed => {}
        CancellationStatus::Processing => return Err(UndoError::InProgress { number }),
        CancellationStatus::Requested
        | CancellationStatus::Rejected
        | CancellationStatus::Failed
        | CancellationStatus::Undone => return Err(UndoError::NotCancelled { number }),
    }
    match cancellation.scope {
        CancelScope::Order { after_partial: false } => {}
        CancelScope::Order { after_partial: true } | CancelScope::Lines { .. } => {
            return Err(UndoError::PartiallyCancelled { number });
        }
    }
    if order.channel_kind.requires_channel_cancel() {
        return Err(UndoError::Irreversible {
            number,
            kind: order.channel_kind,
        });
    }
    if refunded_outside_provider(order) {
        return Ok(None);
    }
    let Some(payment) = order.payment.as_ref() else {
        return Ok(None);
    };
    let (Some(provider_id), Some(reference)) = (&payment.provider_id, &payment.reference) else {
        return Ok(None);
    };
    let amount = if order.financial_status == FinancialStatus::Voided
        && cancellation.financial_status_before == FinancialStatus::Authorized
    {
        payment.amount
    } else {
        order
            .refunds
            .iter()
            .filter(|refund| refund.method == RefundMethod::OriginalPayment)
            .map(|refund| refund.amount)
            .sum()
    };
    if amount.is_zero() {
        return Ok(None);
    }
    Ok(Some(Reauthorization {
        provider_id: provider_id.clone(),
        reference: reference.clone(),
        amount,
        currency: order.currency,
        idempotency_key: format!(
            "rescind-{}-reauthorize-{}",
            cancellation.id, cancellation.reauthorization_generation
        ),
    }))
}

/// Money went back by a way the provider cannot take again (bank transfer, store credit, points):
/// the customer has to pay again.
fn refunded_outside_provider(order: &Order) -> bool {
    order
        .refunds
        .iter()
        .any(|refund| refund.method != RefundMethod::OriginalPayment)
}

/// Undoes the cancellation (U1, U3): the order is open again and will ship. `reauthorized` is the new
/// payment reference when [`plan_undo`] asked for a new authorization.
pub fn undo_cancellation(
    order: &Order,
    reauthorized: Option<String>,
    actor: &Actor,
    now: Timestamp,
) -> Result<OrderChange, UndoError> {
    let needs_reauthorization = plan_undo(order)?;
    let money_went_back_outside_provider = refunded_outside_provider(order);
    let mut order = order.clone();
    let cancellation = order.cancellation.as_mut().expect("plan_undo checked the cancellation");
    let mut history = Vec::new();
    let (fulfillment_status, financial_status, message) = if money_went_back_outside_provider {
        (
            FulfillmentStatus::AwaitingPayment,
            FinancialStatus::Pending,
            "Cancellation undone: money already went back, so the order awaits payment again.".to_owned(),
        )
    } else if let Some(reauthorization) = &needs_reauthorization {
        let reference = reauthorized.ok_or(UndoError::ReauthorizationMissing)?;
        if let Some(payment) = order.payment.as_mut() {
            payment.reference = Some(reference.clone());
        }
        history.push(
            HistoryEntry::new(
                now,
                "payment.reauthorized",
                actor,
                format!(
                    "Payment of {} authorized again ({reference}).",
                    reauthorization.amount.format(reauthorization.currency)
                ),
            )
            .with("reference", reference.clone()),
        );
        (
            cancellation.fulfillment_status_before,
            FinancialStatus::Authorized,
            "Cancellation undone: the order will ship.".to_owned(),
        )
    } else {
        (
            cancellation.fulfillment_status_before,
            cancellation.financial_status_before,
            "Cancellation undone: the order will ship.".to_owned(),
        )
    };
    cancellation.status = CancellationStatus::Undone;
    cancellation.needs_attention = false;
    cancellation.updated_at = now;
    history.push(
        HistoryEntry::new(now, "cancellation.undone", actor, message).with("cancellation_id", cancellation.id.clone()),
    );
    order.status = OrderStatus::Open;
    order.fulfillment_status = fulfillment_status;
    order.financial_status = financial_status;
    order.canceled_at = None;
    order.cancel_reason = None;
    for line in &mut order.line_items {
        line.cancelled_quantity = 0;
    }
    // U2: the stock that went back is taken out again.
    let mut stock_moves = Vec::new();
    if order.restocked {
        stock_moves = StockMove::take_out(
            &order.stock_snapshot,
            StockMoveKind::Undo,
            &format!("undo of the cancellation of order {}", order.number),
        );
        order.restocked = false;
        history.push(HistoryEntry::new(
            now,
            "stock.undo",
            actor,
            format!(
                "Stock taken out again: {}.",
                crate::inventory::describe_stock(&order.stock_snapshot)
            ),
        ));
    }
    // The order ships again: a deleted outbound request is asked for anew.
    let mut workflow = WorkflowSchedule::Finished;
    if let Some(outbound) = order
        .outbound
        .as_mut()
        .filter(|outbound| outbound.status == OutboundStatus::Deleted)
    {
        outbound.status = OutboundStatus::Requested;
        outbound.external_id = None;
        outbound.fee = None;
        outbound.attempts = 0;
        workflow = WorkflowSchedule::DueAt(now);
    }
    order.updated_at = now;
    Ok(OrderChange {
        order,
        history,
        new_refunds: Vec::new(),
        workflow,
        sync: Vec::new(),
        stock_moves,
    })
}

/// Records that the provider declined the re-authorization of an undo: nothing changed there, so the
/// next attempt may use a new idempotency key (a declined answer would otherwise be replayed).
pub fn record_reauthorization_declined(
    order: &Order,
    message: &str,
    actor: &Actor,
    now: Timestamp,
) -> Result<OrderChange, UndoError> {
    let mut order = order.clone();
    let number = order.number.clone();
    let cancellation = order.cancellation.as_mut().ok_or(UndoError::NotCancelled { number })?;
    cancellation.reauthorization_generation += 1;
    cancellation.updated_at = now;
    let history = vec![HistoryEntry::new(
        now,
        "payment.reauthorization_declined",
        actor,
        format!("Undo refused: the payment provider declined to authorize the payment again: {message}"),
    )
    .with("cancellation_id", cancellation.id.clone())];
    Ok(OrderChange::new(order, history, Vec::new()))
}
