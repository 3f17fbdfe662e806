//! Refunds (PRODUCT.md W6, W9): how money goes back, and recording one by hand.

use crate::cancel::{CancellationStatus, StepKind, StepStatus};
use crate::channel::ChannelKind;
use crate::history::{Actor, HistoryEntry};
use crate::ids::IdSource;
use crate::money::Money;
use crate::order::{Order, OrderChange, OrderStatus, Warning};
use crate::time::Timestamp;

crate::named_enum! {
    /// How money goes back to the customer (W6).
    pub enum RefundMethod {
        /// Through the payment provider that took the money.
        OriginalPayment => "original_payment",
        /// Recorded by rescind as credit in the shop.
        StoreCredit => "store_credit",
        /// Recorded by rescind as the shop's points.
        Points => "points",
        /// Made outside rescind; the operator records it when done.
        BankTransfer => "bank_transfer",
        /// The marketplace that collected the money refunds it itself.
        Channel => "channel",
    }
}

/// Money that went back to the customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub amount: Money,
    pub method: RefundMethod,
    pub note: Option<String>,
    /// The cancellation that made this refund, if one did.
    pub cancellation_id: Option<String>,
    pub actor: String,
    pub created_at: Timestamp,
}

/// An operator's record of a refund (API.md `POST /orders/{id}/refunds`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// More than zero.
    pub amount: Money,
    pub method: RefundMethod,
    pub note: Option<String>,
}

/// Why a refund cannot be recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    #[error("the refund of {requested} exceeds what is still refundable on this order ({refundable})")]
    ExceedsRefundable { requested: String, refundable: String },
    #[error("refunds to the original payment need a payment provider integration, and none is linked to this order; record a store_credit, points or bank_transfer refund instead")]
    PaymentProviderRequired,
    #[error("refund_method `channel` applies only to marketplace orders; this order is from the {kind} channel")]
    ChannelRefundNotApplicable { kind: ChannelKind },
}

/// Whether refunds of this method need a payment provider call rescind cannot make yet.
pub(crate) fn needs_payment_provider(method: RefundMethod) -> bool {
    match method {
        RefundMethod::OriginalPayment => true,
        RefundMethod::StoreCredit | RefundMethod::Points | RefundMethod::BankTransfer | RefundMethod::Channel => false,
    }
}

/// Records a refund the operator made (or tells why it cannot be). When the order has a cancellation
/// waiting for its refund and this covers it, the cancellation completes (W4). A refund on an order
/// that is neither cancelled nor shipped raises the W9 warning: the goods still ship.
pub fn record_refund(
    order: &Order,
    request: &RefundRequest,
    actor: &Actor,
    ids: &mut dyn IdSource,
    now: Timestamp,
) -> Result<OrderChange, RefundError> {
    let refundable = order.refundable();
    if request.amount > refundable {
        return Err(RefundError::ExceedsRefundable {
            requested: request.amount.format(order.currency),
            refundable: refundable.format(order.currency),
        });
    }
    if needs_payment_provider(request.method) {
        return Err(RefundError::PaymentProviderRequired);
    }
    if request.method == RefundMethod::Channel && order.channel_kind == ChannelKind::OwnStore {
        return Err(RefundError::ChannelRefundNotApplicable {
            kind: order.channel_kind,
        });
    }

    let mut order = order.clone();
    let refund = Refund {
        id: ids.new_id("ref"),
        amount: request.amount,
        method: request.method,
        note: request.note.clone(),
        cancellation_id: order.cancellation.as_ref().map(|c| c.id.clone()),
        actor: actor.label(),
        created_at: now,
    };
    let mut history = vec![HistoryEntry::new(
        now,
        "refund.recorded",
        actor,
        format!(
            "Refund of {} recorded ({}).",
            refund.amount.format(order.currency),
            refund.method
        ),
    )
    .with("refund_id", refund.id.clone())
    .with("amount", refund.amount.format(order.currency))
    .with("method", refund.method.as_str())];
    apply_refunds(&mut order, std::slice::from_ref(&refund), now);

    let still_owed = order.owed_for_cancellation();
    if let Some(cancellation) = order.cancellation.as_mut() {
        if cancellation.status == CancellationStatus::AwaitingRefund && still_owed.is_zero() {
            cancellation.status = CancellationStatus::Completed;
            cancellation.completed_at = Some(now);
            cancellation.updated_at = now;
            if let Some(step) = cancellation.steps.iter_mut().find(|step| step.kind == StepKind::Refund) {
                step.status = StepStatus::Succeeded;
                step.message = format!(
                    "refunded in full ({} recorded)",
                    order.total_refund_price.format(order.currency)
                );
                step.attempts += 1;
                step.updated_at = now;
            }
            history.push(
                HistoryEntry::new(
                    now,
                    "cancellation.completed",
                    actor,
                    "Cancellation completed: everything paid has been refunded.",
                )
                .with("cancellation_id", cancellation.id.clone()),
            );
        }
    }

    if order.status == OrderStatus::Open && !order.fulfillment_status.has_shipped() {
        order.add_warning(Warning::RefundedButWillShip);
        history.push(HistoryEntry::new(
            now,
            "warning.refunded_but_will_ship",
            actor,
            "Money was refunded but the order is not cancelled: it will still ship unless it is cancelled.",
        ));
    }
    order.updated_at = now;
    Ok(OrderChange::new(order, history, vec![refund]))
}

/// Adds refunds to the order's ledger and totals, and moves its financial status along.
pub(crate) fn apply_refunds(order: &mut Order, refunds: &[Refund], now: Timestamp) {
    for refund in refunds {
        order.total_refund_price = order
            .total_refund_price
            .checked_add(refund.amount)
            .unwrap_or(order.total_refund_price);
        order.refunds.push(refund.clone());
    }
    if !refunds.is_empty() {
        order.financial_status = order.financial_status_after_refunds();
        order.updated_at = now;
    }
}
