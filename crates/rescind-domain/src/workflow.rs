//! The durable part of a cancellation (W2, W7): which external call a pending step needs, what its
//! outcome does to the order, how long to wait before trying again, and an operator's retry.

use crate::cancel::{continue_after_gate, CancelScope, CancellationStatus, StepKind, StepStatus};
use crate::channel::ChannelKind;
use crate::history::{Actor, HistoryEntry};
use crate::ids::IdSource;
use crate::money::{Currency, Money};
use crate::order::{FinancialStatus, Order, OrderChange, PaymentMethod, SyncKind, SyncRecord, WorkflowSchedule};
use crate::order::{OrderStatus, Warning};
use crate::refund::{apply_refunds, Refund, RefundMethod};
use crate::time::Timestamp;
use crate::warehouse::OutboundStatus;

/// How failed external calls are retried (W7): capped exponential backoff with jitter, a bounded
/// number of attempts, then the needs-attention list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts of one step before an operator is asked to look.
    pub attempts_max: u32,
    /// The wait after the first failure; doubled after each further one.
    pub delay_base_ms: u64,
    /// The longest wait between two attempts.
    pub delay_max_ms: u64,
}

impl Default for RetryPolicy {
    /// Twelve attempts over about ten minutes: a partner's short outage heals by itself, a long one
    /// reaches an operator the same hour.
    fn default() -> Self {
        RetryPolicy {
            attempts_max: 12,
            delay_base_ms: 500,
            delay_max_ms: 120_000,
        }
    }
}

impl RetryPolicy {
    /// When to try again after `attempts` failed attempts, or `None` when they are used up. `jitter`
    /// in `[0, 1)` spreads retries of many steps apart ("full jitter" over the upper half).
    pub fn retry_at(&self, attempts: u32, jitter: f64, now: Timestamp) -> Option<Timestamp> {
        if attempts >= self.attempts_max {
            return None;
        }
        let exponential = self
            .delay_base_ms
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
        let capped = exponential.min(self.delay_max_ms);
        let delay_ms = capped / 2 + ((capped / 2) as f64 * jitter.clamp(0.0, 1.0)) as u64;
        Some(Timestamp::from_unix_micros(now.unix_micros() + delay_ms as i64 * 1000))
    }
}

/// What the payment provider must do for a pending refund step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentAction {
    /// Refund captured money.
    Refund { amount: Money },
    /// Cancel an authorization that was never captured.
    Void,
}

/// A call the worker must make to the order's payment provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentCall {
    pub provider_id: String,
    /// The provider's payment, e.g. a Stripe PaymentIntent `pi_…`.
    pub reference: String,
    pub currency: Currency,
    pub action: PaymentAction,
    /// Derived from the step: the same for every attempt of one generation (W7).
    pub idempotency_key: String,
    /// An earlier attempt may have reached the provider: look the result up before calling again.
    pub earlier_attempts: bool,
}

/// A line of a channel cancel, for channels that cancel by item (Amazon).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelLine {
    /// The channel's own id of the line (Amazon's AmazonOrderItemCode).
    pub channel_line_item_id: Option<String>,
    pub sku: String,
    pub quantity: u32,
}

/// A cancel the worker must send to the order's sales channel (C3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelCall {
    pub channel_id: String,
    pub kind: ChannelKind,
    pub channel_order_id: String,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub reason_detail: Option<String>,
    pub staff_note: Option<String>,
    pub notify_customer: bool,
    /// The channel collected the money and is to refund it (W6).
    pub refund_at_channel: bool,
    /// The channel is to put its own stock back: asked for, and rescind did not deduct the stock
    /// itself (then rescind restocks and pushes levels instead, I2–I5).
    pub restock_at_channel: bool,
    /// Only `lines` are cancelled and the order stays open at the channel (B1).
    pub partial: bool,
    pub lines: Vec<ChannelLine>,
    pub idempotency_key: String,
    pub earlier_attempts: bool,
}

/// A call the worker must make to the order's warehouse for the warehouse step (F2, C4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarehouseCall {
    pub warehouse_id: String,
    /// rescind's identifier of the outbound request (the order id).
    pub identifier: String,
    /// The warehouse's id, when it confirmed the creation.
    pub external_id: Option<String>,
    pub idempotency_key: String,
    pub earlier_attempts: bool,
}

/// The outbound request the worker must create at the warehouse (F1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundCall {
    pub warehouse_id: String,
    pub identifier: String,
    pub order_no: String,
    pub recipient: crate::order::Address,
    /// SKUs and quantities.
    pub items: Vec<(String, u32)>,
    pub idempotency_key: String,
}

/// The work a pending cancellation needs from the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingWork {
    Channel(ChannelCall),
    Warehouse(WarehouseCall),
    CreateOutbound(OutboundCall),
    Payment(PaymentCall),
    /// The refund step is pending but nothing is owed any more (refunded by hand meanwhile).
    NothingOwed,
    /// Put the deduction snapshot back in stock (I2, I3); done by the store, exactly once.
    Restock,
}

impl PendingWork {
    /// The cancellation step the work is for; `None` for the outbound request's creation.
    pub fn step_kind(&self) -> Option<StepKind> {
        match self {
            PendingWork::Channel(_) => Some(StepKind::ChannelCancel),
            PendingWork::Warehouse(_) => Some(StepKind::WarehouseCancel),
            PendingWork::Payment(_) | PendingWork::NothingOwed => Some(StepKind::Refund),
            PendingWork::Restock => Some(StepKind::Restock),
            PendingWork::CreateOutbound(_) => None,
        }
    }
}

/// The next external call of the order's cancellation, or `None` when no step is pending.
pub fn pending_work(order: &Order) -> Option<PendingWork> {
    let processing = order
        .cancellation
        .as_ref()
        .filter(|c| c.status == CancellationStatus::Processing);
    let Some(cancellation) = processing else {
        return outbound_to_create(order);
    };
    // Steps run in W2's order, and nothing passes a gate (the channel, the warehouse) that has not
    // done its part: a failed or waiting gate blocks every later step.
    let step = cancellation.steps.iter().find(|step| {
        let gate = matches!(step.kind, StepKind::ChannelCancel | StepKind::WarehouseCancel);
        step.status == StepStatus::Pending
            || (gate
                && matches!(
                    step.status,
                    StepStatus::Failed | StepStatus::Waiting | StepStatus::Running
                ))
    })?;
    if step.status != StepStatus::Pending {
        return None;
    }
    match step.kind {
        StepKind::ChannelCancel => Some(PendingWork::Channel(ChannelCall {
            channel_id: order.channel_id.clone(),
            kind: order.channel_kind,
            channel_order_id: order.channel_order_id.clone()?,
            reason_code: cancellation.reason_code.clone(),
            reason: cancellation.reason.clone(),
            reason_detail: cancellation.reason_detail.clone(),
            staff_note: cancellation.staff_note.clone(),
            notify_customer: cancellation.notify_customer,
            refund_at_channel: cancellation.refund
                && order
                    .payment
                    .as_ref()
                    .is_some_and(|payment| payment.method == PaymentMethod::Channel),
            restock_at_channel: cancellation.restock && !order.inventory_deducted,
            partial: cancellation.scope.is_partial(),
            lines: match &cancellation.scope {
                CancelScope::Order { .. } => order
                    .line_items
                    .iter()
                    .map(|line| ChannelLine {
                        channel_line_item_id: line.channel_line_item_id.clone(),
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                    })
                    .collect(),
                CancelScope::Lines { lines, .. } => lines
                    .iter()
                    .filter_map(|cancelled| {
                        let line = order.line_items.iter().find(|line| line.id == cancelled.line_item_id)?;
                        Some(ChannelLine {
                            channel_line_item_id: line.channel_line_item_id.clone(),
                            sku: line.sku.clone(),
                            quantity: cancelled.quantity,
                        })
                    })
                    .collect(),
            },
            idempotency_key: step.idempotency_key(&cancellation.id),
            earlier_attempts: step.attempts > 0,
        })),
        StepKind::Refund => {
            let payment = order.payment.as_ref()?;
            let action = if order.financial_status == FinancialStatus::Authorized {
                PaymentAction::Void
            } else if order.owed_for_cancellation().is_zero() {
                return Some(PendingWork::NothingOwed);
            } else {
                PaymentAction::Refund {
                    amount: order.owed_for_cancellation(),
                }
            };
            Some(PendingWork::Payment(PaymentCall {
                provider_id: payment.provider_id.clone()?,
                reference: payment.reference.clone()?,
                currency: order.currency,
                action,
                idempotency_key: step.idempotency_key(&cancellation.id),
                earlier_attempts: step.attempts > 0,
            }))
        }
        StepKind::WarehouseCancel => {
            let outbound = order.outbound.as_ref()?;
            Some(PendingWork::Warehouse(WarehouseCall {
                warehouse_id: outbound.warehouse_id.clone(),
                identifier: order.id.clone(),
                external_id: outbound.external_id.clone(),
                idempotency_key: step.idempotency_key(&cancellation.id),
                earlier_attempts: step.attempts > 0,
            }))
        }
        StepKind::Restock => Some(PendingWork::Restock),
        StepKind::Notify => None,
    }
}

/// The outbound request of an open order that is ready to ship and has none at its warehouse yet.
fn outbound_to_create(order: &Order) -> Option<PendingWork> {
    let outbound = order
        .outbound
        .as_ref()
        .filter(|outbound| outbound.status == OutboundStatus::Requested)?;
    if order.status != OrderStatus::Open {
        return None;
    }
    Some(PendingWork::CreateOutbound(OutboundCall {
        warehouse_id: outbound.warehouse_id.clone(),
        identifier: order.id.clone(),
        order_no: order.number.clone(),
        recipient: order.shipping_address.clone(),
        items: order
            .line_items
            .iter()
            .map(|line| (line.sku.clone(), line.quantity))
            .collect(),
        idempotency_key: format!("rescind-{}-outbound", order.id),
    }))
}

/// What came of creating an outbound request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundOutcome {
    Created {
        external_id: String,
        status: OutboundStatus,
    },
    /// The warehouse refused it (a wrong address, an unknown product): an operator must look.
    Refused { message: String },
    Failed {
        message: String,
        retry_at: Option<Timestamp>,
    },
}

/// Records the outcome of an outbound request's creation; the order's shipment status follows.
pub fn record_outbound(order: &Order, outcome: OutboundOutcome, now: Timestamp) -> Result<OrderChange, StaleStep> {
    let mut order = order.clone();
    let outbound = order
        .outbound
        .as_mut()
        .filter(|outbound| outbound.status == OutboundStatus::Requested)
        .ok_or(StaleStep)?;
    let actor = Actor::System;
    outbound.attempts += 1;
    let (message, workflow) = match outcome {
        OutboundOutcome::Created { external_id, status } => {
            let message = format!("Outbound request {external_id} created at the warehouse ({status}).");
            outbound.external_id = Some(external_id);
            outbound.status = status;
            outbound.last_error = None;
            if order.status == OrderStatus::Open {
                if let Some(fulfillment) = status.fulfillment() {
                    order.fulfillment_status = fulfillment;
                }
            }
            (message, WorkflowSchedule::Finished)
        }
        OutboundOutcome::Refused { message } => {
            outbound.last_error = Some(message.clone());
            (
                format!("The warehouse refused the outbound request: {message}. Fix the order and ask again."),
                WorkflowSchedule::Finished,
            )
        }
        OutboundOutcome::Failed { message, retry_at } => {
            outbound.last_error = Some(message.clone());
            match retry_at {
                Some(at) => (
                    format!("Creating the outbound request failed, will retry: {message}"),
                    WorkflowSchedule::DueAt(at),
                ),
                None => (
                    format!(
                        "Creating the outbound request failed {} times: {message}",
                        outbound.attempts
                    ),
                    WorkflowSchedule::Finished,
                ),
            }
        }
    };
    let history = vec![HistoryEntry::new(now, "outbound.created", &actor, message)];
    order.updated_at = now;
    Ok(OrderChange {
        order,
        history,
        new_refunds: Vec::new(),
        workflow,
        sync: Vec::new(),
        stock_moves: Vec::new(),
    })
}

/// What came of a step's external call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// The channel cancelled the order (or had already): `message` says what it answered.
    ChannelCancelled { message: String },
    /// The restock ran (I4): what went back, what had gone back already, which SKUs are unknown.
    Restocked {
        restocked: Vec<(String, u32)>,
        already: Vec<String>,
        missing: Vec<String>,
    },
    /// The outbound request was deleted, or there was none to stop.
    OutboundStopped { message: String },
    /// The warehouse took a cancellation request (C4), for `fee`; its answer comes later.
    CancelRequested { fee: Option<Money>, message: String },
    /// The warehouse can no longer stop the goods (C5).
    WarehouseTooLate { status: OutboundStatus, message: String },
    /// The provider refunded `amount`; `reference` is its refund id.
    Refunded { amount: Money, reference: String },
    /// The authorization was cancelled.
    Voided,
    /// Nothing was owed any more.
    NothingOwed,
    /// The partner said no for a business reason: nothing happened there, and trying again with the
    /// same request would only hear no again.
    Refused { message: String },
    /// The call failed, or its outcome is unknown. Try again at `retry_at`; `None` when the attempts
    /// are used up.
    Failed {
        message: String,
        retry_at: Option<Timestamp>,
    },
}

/// The step was no longer pending when its outcome arrived (undone, or finished elsewhere).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the step is no longer pending")]
pub struct StaleStep;

/// Records the outcome of the pending step `kind` and moves the cancellation along (C3, W3, W4, W7).
/// Takes the order itself: the change is made on it, not on a copy (the group writer hands over the
/// order it loaded).
pub fn record_step_outcome(
    mut order: Order,
    kind: StepKind,
    outcome: StepOutcome,
    ids: &mut dyn IdSource,
    now: Timestamp,
) -> Result<OrderChange, StaleStep> {
    let currency = order.currency;
    let channel = order.channel_kind;
    let order_channel_id = order.channel_id.clone();
    let order_channel_order_id = order.channel_order_id.clone();
    let actor = Actor::System;
    let restock_quantities = order.current_restock_quantities();
    let cancellation = order.cancellation.as_mut().ok_or(StaleStep)?;
    if cancellation.status != CancellationStatus::Processing {
        return Err(StaleStep);
    }
    let cancellation_id = cancellation.id.clone();
    cancellation.updated_at = now;
    let partner = match kind {
        StepKind::ChannelCancel => channel.to_string(),
        StepKind::WarehouseCancel => "the warehouse".to_owned(),
        _ => "the payment provider".to_owned(),
    };
    let channel_done = cancellation
        .step(StepKind::ChannelCancel)
        .is_some_and(|step| step.status == StepStatus::Succeeded);
    let step = cancellation
        .steps
        .iter_mut()
        .find(|step| step.kind == kind && step.status == StepStatus::Pending)
        .ok_or(StaleStep)?;
    step.attempts += 1;
    step.updated_at = now;

    let mut history = Vec::new();
    let mut refunds = Vec::new();
    let mut financial_status = None;
    let mut gate_passed = false;
    let mut channel_refused = false;
    let mut warehouse_too_late = false;
    let mut outbound_now: Option<(OutboundStatus, Option<Money>)> = None;
    let mut new_warning = None;
    let mut cancellation_fee = None;
    let mut restocked_now: Option<Vec<(String, u32)>> = None;
    let workflow;
    match outcome {
        StepOutcome::ChannelCancelled { message } => {
            step.status = StepStatus::Succeeded;
            step.message = format!("cancelled at {channel}: {message}");
            step.last_error = None;
            gate_passed = true;
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::Restocked {
            restocked,
            already,
            missing,
        } => {
            step.last_error = None;
            let done = if restocked.is_empty() {
                String::new()
            } else {
                format!("restocked {}", crate::inventory::describe_stock(&restocked))
            };
            if let Some(sku) = missing.first() {
                step.status = StepStatus::Failed;
                step.message = format!(
                    "failed: SKU {sku} does not exist — adjust stock by hand{}",
                    if done.is_empty() {
                        String::new()
                    } else {
                        format!(" ({done})")
                    }
                );
                step.last_error = Some(format!("unknown SKU {}", missing.join(", ")));
            } else if restocked.is_empty() && !already.is_empty() {
                step.status = StepStatus::Skipped;
                step.message = "skipped: already restocked (or in progress)".to_owned();
            } else {
                step.status = StepStatus::Succeeded;
                step.message = done;
            }
            restocked_now = Some(restocked);
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::OutboundStopped { message } => {
            step.status = StepStatus::Succeeded;
            step.message = message;
            step.last_error = None;
            outbound_now = Some((OutboundStatus::Deleted, None));
            gate_passed = true;
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::CancelRequested { fee, message } => {
            step.status = StepStatus::Waiting;
            step.message = format!(
                "cancellation requested at the warehouse{}; until it accepts, the goods may still ship ({message})",
                fee.map(|fee| format!(" for a fee of {}", fee.format(currency)))
                    .unwrap_or_default()
            );
            step.last_error = None;
            outbound_now = Some((OutboundStatus::CancelRequest, fee));
            cancellation_fee = fee;
            new_warning = Some(Warning::CancelRequestedMayShip);
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::WarehouseTooLate { status, message } => {
            step.status = StepStatus::Failed;
            step.message = format!(
                "failed: the outbound request is {status} and the warehouse can no longer stop it; the goods will ship, so ask the recipient to refuse delivery ({message})"
            );
            step.last_error = Some(message);
            outbound_now = Some((status, None));
            warehouse_too_late = true;
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::Refunded { amount, reference } => {
            step.status = StepStatus::Succeeded;
            step.message = format!(
                "refunded {} to the original payment ({reference})",
                amount.format(currency)
            );
            step.last_error = None;
            refunds.push(Refund {
                id: ids.new_id("ref"),
                amount,
                method: RefundMethod::OriginalPayment,
                note: Some(format!("payment provider refund {reference}")),
                cancellation_id: Some(cancellation_id.clone()),
                actor: actor.label(),
                created_at: now,
            });
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::Voided => {
            step.status = StepStatus::Succeeded;
            step.message = "voided the payment authorization".to_owned();
            step.last_error = None;
            financial_status = Some(FinancialStatus::Voided);
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::NothingOwed => {
            step.status = StepStatus::Skipped;
            step.message = "skipped: everything paid has already been refunded".to_owned();
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::Refused { message } => {
            step.status = StepStatus::Failed;
            step.message = format!("failed: {partner} refused: {message}");
            step.last_error = Some(message);
            // Refused means nothing happened: a retry may safely use a new idempotency key.
            step.generation += 1;
            channel_refused = kind == StepKind::ChannelCancel;
            workflow = WorkflowSchedule::Finished;
        }
        StepOutcome::Failed {
            message,
            retry_at: Some(retry_at),
        } => {
            step.message = format!("will retry: {message}");
            step.last_error = Some(message);
            workflow = WorkflowSchedule::DueAt(retry_at);
        }
        StepOutcome::Failed {
            message,
            retry_at: None,
        } => {
            step.status = StepStatus::Failed;
            step.message = format!("failed after {} attempts: {message}", step.attempts);
            step.last_error = Some(message);
            workflow = WorkflowSchedule::Finished;
        }
    }
    let step_status = step.status;
    if cancellation_fee.is_some() {
        cancellation.fee = cancellation_fee;
    }
    let sync = if kind == StepKind::WarehouseCancel {
        vec![SyncRecord {
            at: now,
            kind: SyncKind::Cancel,
            target: format!(
                "warehouse {}",
                order.outbound.as_ref().map(|o| o.warehouse_id.as_str()).unwrap_or("?")
            ),
            request: format!(
                "stop the outbound request {}",
                order
                    .outbound
                    .as_ref()
                    .and_then(|o| o.external_id.as_deref())
                    .unwrap_or(order.id.as_str())
            ),
            ok: matches!(step_status, StepStatus::Succeeded | StepStatus::Waiting),
            message: step.last_error.clone().unwrap_or_else(|| step.message.clone()),
            fee: outbound_now.and_then(|(_, fee)| fee),
        }]
    } else if kind == StepKind::ChannelCancel {
        vec![SyncRecord {
            at: now,
            kind: SyncKind::Cancel,
            target: format!("{channel} {}", order_channel_id),
            request: format!(
                "cancel order {}{}",
                order_channel_order_id.as_deref().unwrap_or("?"),
                cancellation
                    .reason_code
                    .as_deref()
                    .map(|code| format!(" with reason {code}"))
                    .unwrap_or_default()
            ),
            ok: step_status == StepStatus::Succeeded,
            message: step.last_error.clone().unwrap_or_else(|| step.message.clone()),
            fee: None,
        }]
    } else if kind == StepKind::Restock {
        vec![SyncRecord {
            at: now,
            kind: SyncKind::Restock,
            target: "rescind stock".to_owned(),
            request: format!(
                "put back {} for cancellation {cancellation_id}",
                crate::inventory::describe_stock(&restock_quantities)
            ),
            ok: step_status != StepStatus::Failed,
            message: step.message.clone(),
            fee: None,
        }]
    } else {
        Vec::new()
    };
    history.push(
        HistoryEntry::new(now, kind.history_kind(), &actor, format!("{kind}: {}", step.message))
            .with("status", step_status.as_str())
            .with("attempts", step.attempts.to_string()),
    );

    if warehouse_too_late && !channel_done {
        // C5 found late: the goods ship; nothing else happens and the order stays as it was.
        fail_cancellation(
            cancellation,
            "not run: the warehouse could not stop the shipment",
            "Cancellation failed: the warehouse can no longer stop the goods.".to_owned(),
            now,
            &mut history,
        );
    } else if warehouse_too_late {
        // The channel cancelled the sale already: the order is cancelled, but the goods ship.
        cancellation.needs_attention = true;
        gate_passed = true;
        new_warning = Some(Warning::ShippedAfterCancel);
        history.push(
            HistoryEntry::new(
                now,
                "cancellation.needs_attention",
                &actor,
                "The channel cancelled the order but the warehouse ships it: arrange a refusal of delivery or a return.",
            )
            .with("cancellation_id", cancellation_id.clone()),
        );
    } else if channel_refused {
        // C3: the channel said no, so nothing else happens and the order stays as it was.
        fail_cancellation(
            cancellation,
            "not run: the channel cancel did not succeed",
            format!("Cancellation failed: {channel} refused it; the order is unchanged."),
            now,
            &mut history,
        );
    } else if step_status == StepStatus::Failed {
        cancellation.needs_attention = true;
        if kind == StepKind::Refund {
            cancellation.status = CancellationStatus::AwaitingRefund;
        }
        history.push(
            HistoryEntry::new(
                now,
                "cancellation.needs_attention",
                &actor,
                "Cancellation needs attention: a step failed and was not retried again; retry it once the cause is fixed.",
            )
            .with("cancellation_id", cancellation_id.clone()),
        );
    }
    if order
        .cancellation
        .as_ref()
        .is_some_and(|cancellation| cancellation.status == CancellationStatus::Failed)
    {
        crate::request::reopen_request(&mut order, &cancellation_id, now, &mut history);
    }
    for refund in &refunds {
        history.push(
            HistoryEntry::new(
                now,
                "refund.recorded",
                &actor,
                format!(
                    "Refund of {} made through the payment provider.",
                    refund.amount.format(currency)
                ),
            )
            .with("refund_id", refund.id.clone())
            .with("amount", refund.amount.format(currency))
            .with("method", refund.method.as_str()),
        );
    }
    apply_refunds(&mut order, &refunds, now);
    if let Some(status) = financial_status {
        order.financial_status = status;
    }
    if let Some((status, fee)) = outbound_now {
        if let Some(outbound) = order.outbound.as_mut() {
            outbound.status = status;
            if fee.is_some() {
                outbound.fee = fee;
            }
        }
        if order.status == OrderStatus::Open {
            if let Some(fulfillment) = status.fulfillment() {
                order.fulfillment_status = fulfillment;
            }
        }
    }
    if let Some(warning) = new_warning {
        order.add_warning(warning);
    }
    if let Some(restocked) = restocked_now {
        match order
            .cancellation
            .as_ref()
            .map(|cancellation| cancellation.scope.is_partial())
        {
            // What went back for some lines is no longer held for the order (B1, I3).
            Some(true) => {
                for (sku, quantity) in &restocked {
                    if let Some((_, held)) = order.stock_snapshot.iter_mut().find(|(held_sku, _)| held_sku == sku) {
                        *held = held.saturating_sub(*quantity);
                    }
                }
            }
            Some(false) | None => order.restocked = true,
        }
    }
    if gate_passed {
        let (more_refunds, next) = continue_after_gate(&mut order, &actor, ids, now, &mut history);
        refunds.extend(more_refunds);
        order.updated_at = now;
        return Ok(OrderChange {
            order,
            history,
            new_refunds: refunds,
            workflow: next,
            sync,
            stock_moves: Vec::new(),
        });
    }
    settle_cancellation(&mut order, &mut history, now);
    order.updated_at = now;
    // A later step still waits for the worker (a restock after a card refund): run it next.
    let later_step_pending = order.cancellation.as_ref().is_some_and(|cancellation| {
        cancellation.status == CancellationStatus::Processing
            && cancellation.steps.iter().any(|step| step.status == StepStatus::Pending)
    });
    let workflow = match workflow {
        WorkflowSchedule::Finished if later_step_pending => WorkflowSchedule::DueAt(now),
        other => other,
    };
    Ok(OrderChange {
        order,
        history,
        new_refunds: refunds,
        workflow,
        sync,
        stock_moves: Vec::new(),
    })
}

/// Records, as one change, the outcomes of steps the worker ran one after another without writing in
/// between (each outcome left the next call due at once): each on the order as the outcome before it
/// left it, at the time it came (W2: every step is still recorded, in its order, with its outcome).
/// An outcome found stale ends the run there: the ones before it are recorded, it and the rest are
/// not, as if each had been recorded on its own. `Err(StaleStep)` only when the first one is stale.
pub fn record_step_outcomes(
    order: Order,
    outcomes: Vec<(StepKind, StepOutcome, Timestamp)>,
    ids: &mut dyn IdSource,
) -> Result<OrderChange, StaleStep> {
    let mut outcomes = outcomes.into_iter();
    let (kind, outcome, at) = outcomes.next().ok_or(StaleStep)?;
    let mut change = record_step_outcome(order, kind, outcome, ids, at)?;
    for (kind, outcome, at) in outcomes {
        match record_step_outcome(change.order.clone(), kind, outcome, ids, at) {
            Ok(later) => change = change.then(later),
            Err(StaleStep) => break,
        }
    }
    Ok(change)
}

/// A gate refused: the cancellation fails, the steps after it do not run, the order stays as it was.
fn fail_cancellation(
    cancellation: &mut crate::cancel::Cancellation,
    later_message: &str,
    message: String,
    now: Timestamp,
    history: &mut Vec<HistoryEntry>,
) {
    cancellation.status = CancellationStatus::Failed;
    for later in cancellation
        .steps
        .iter_mut()
        .filter(|step| step.status == StepStatus::Pending)
    {
        later.status = StepStatus::Skipped;
        later.message = later_message.to_owned();
        later.updated_at = now;
    }
    history.push(
        HistoryEntry::new(now, "cancellation.failed", &Actor::System, message)
            .with("cancellation_id", cancellation.id.clone()),
    );
}

/// Once no step is pending any more, the cancellation is completed when everything paid went back
/// (W4), or waits for the rest of the money.
fn settle_cancellation(order: &mut Order, history: &mut Vec<HistoryEntry>, now: Timestamp) {
    let refundable = order.owed_for_cancellation();
    let Some(cancellation) = order.cancellation.as_mut() else {
        return;
    };
    if cancellation.status != CancellationStatus::Processing
        || cancellation.steps.iter().any(|step| step.status == StepStatus::Pending)
    {
        return;
    }
    let (status, message) = if refundable.is_zero() {
        (CancellationStatus::Completed, "Cancellation completed.".to_owned())
    } else {
        (
            CancellationStatus::AwaitingRefund,
            format!(
                "Cancellation awaiting refund: {} is still owed.",
                refundable.format(order.currency)
            ),
        )
    };
    cancellation.status = status;
    if status == CancellationStatus::Completed {
        cancellation.completed_at = Some(now);
    }
    history.push(
        HistoryEntry::new(
            now,
            ["cancellation.", status.as_str()].concat(),
            &Actor::System,
            message,
        )
        .with("cancellation_id", cancellation.id.clone()),
    );
}

/// Why a cancellation cannot be retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error("this cancellation does not need attention; there is nothing to retry")]
    NotNeedingAttention,
}

/// An operator re-drives a cancellation on the needs-attention list: its failed step runs again.
pub fn retry_cancellation(order: &Order, actor: &Actor, now: Timestamp) -> Result<OrderChange, RetryError> {
    let mut order = order.clone();
    let cancellation = order
        .cancellation
        .as_mut()
        .filter(|c| c.needs_attention)
        .ok_or(RetryError::NotNeedingAttention)?;
    for step in cancellation
        .steps
        .iter_mut()
        .filter(|step| step.status == StepStatus::Failed)
    {
        step.status = StepStatus::Pending;
        step.attempts = 0;
        step.message = "pending: retried by an operator".to_owned();
        step.updated_at = now;
    }
    cancellation.needs_attention = false;
    cancellation.status = CancellationStatus::Processing;
    cancellation.updated_at = now;
    let history = vec![HistoryEntry::new(
        now,
        "cancellation.retried",
        actor,
        "Cancellation retried by an operator.",
    )
    .with("cancellation_id", cancellation.id.clone())];
    order.updated_at = now;
    Ok(OrderChange {
        order,
        history,
        new_refunds: Vec::new(),
        workflow: WorkflowSchedule::DueAt(now),
        sync: Vec::new(),
        stock_moves: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap_and_then_stop() {
        let policy = RetryPolicy {
            attempts_max: 5,
            delay_base_ms: 100,
            delay_max_ms: 500,
        };
        let now = Timestamp::from_unix_micros(0);
        let delay = |attempts, jitter| policy.retry_at(attempts, jitter, now).map(|at| at.unix_micros() / 1000);
        assert_eq!(delay(1, 0.0), Some(50));
        assert_eq!(delay(1, 0.999), Some(99));
        assert_eq!(delay(2, 0.0), Some(100));
        assert_eq!(delay(4, 1.0), Some(500), "capped");
        assert_eq!(delay(5, 0.5), None, "attempts used up");
    }
}
