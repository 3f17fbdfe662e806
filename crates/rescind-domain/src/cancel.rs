//! The cancellation (PRODUCT.md §2, §3): whether an order may be cancelled, which steps follow and what
//! each does, and the order's state afterwards. [`plan_cancellation`] decides without changing anything
//! (it also answers dry runs); [`cancel_order`] turns the plan into the order's new state.

use crate::channel::ChannelKind;
use crate::history::{Actor, HistoryEntry};
use crate::ids::IdSource;
use crate::money::Money;
use crate::order::{
    FinancialStatus, FulfillmentStatus, Order, OrderChange, OrderStatus, PaymentMethod, Warning, WorkflowSchedule,
};
use crate::refund::{apply_refunds, needs_payment_provider, Refund, RefundMethod};
use crate::time::Timestamp;

crate::named_enum! {
    /// W3.
    pub enum CancellationStatus {
        /// A customer asked (§4); nothing has happened yet.
        Requested => "requested",
        Processing => "processing",
        /// The order is cancelled and will not ship, but money is still owed.
        AwaitingRefund => "awaiting_refund",
        Completed => "completed",
        Rejected => "rejected",
        /// A business refusal; nothing changed.
        Failed => "failed",
        Undone => "undone",
    }
}

impl CancellationStatus {
    /// The order counts as cancelled (or being cancelled) while its cancellation is in one of these.
    pub const fn is_in_effect(self) -> bool {
        match self {
            CancellationStatus::Processing | CancellationStatus::AwaitingRefund | CancellationStatus::Completed => true,
            CancellationStatus::Requested
            | CancellationStatus::Rejected
            | CancellationStatus::Failed
            | CancellationStatus::Undone => false,
        }
    }
}

crate::named_enum! {
    /// Who asked for the cancellation (W1).
    pub enum RequestedBy {
        Merchant => "merchant",
        Customer => "customer",
        Channel => "channel",
        Warehouse => "warehouse",
    }
}

crate::named_enum! {
    /// The steps of W2, in the order they run.
    pub enum StepKind {
        ChannelCancel => "channel_cancel",
        WarehouseCancel => "warehouse_cancel",
        Refund => "refund",
        Restock => "restock",
        Notify => "notify",
    }
}

crate::named_enum! {
    pub enum StepStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
        /// Waiting on someone outside rescind (a bank transfer, a warehouse's answer).
        Waiting => "waiting",
    }
}

/// One step of a cancellation and its outcome so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub status: StepStatus,
    pub message: String,
    pub attempts: u32,
    /// Part of the idempotency key of the step's external call (W7). It changes only after the
    /// partner refused the call outright, so a new attempt can never repeat one that took effect.
    pub generation: u32,
    /// The last failure of an external call, for the operator.
    pub last_error: Option<String>,
    pub updated_at: Timestamp,
}

impl Step {
    /// The idempotency key of this step's external call within `cancellation_id` (W7).
    pub fn idempotency_key(&self, cancellation_id: &str) -> String {
        format!("rescind-{cancellation_id}-{}-{}", self.kind, self.generation)
    }
}

/// A cancellation of an order (W1, W3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancellation {
    pub id: String,
    pub status: CancellationStatus,
    pub requested_by: RequestedBy,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub reason_detail: Option<String>,
    pub staff_note: Option<String>,
    pub refund: bool,
    pub refund_method: Option<RefundMethod>,
    pub restock: bool,
    pub notify_customer: bool,
    /// A step kept failing or was rejected; an operator must look (W7).
    pub needs_attention: bool,
    pub steps: Vec<Step>,
    /// The shipment and money statuses before the cancel, restored by an undo (§5).
    pub fulfillment_status_before: FulfillmentStatus,
    pub financial_status_before: FinancialStatus,
    /// Part of the idempotency key of an undo's re-authorization; changes only after the provider
    /// declined one, so a lost answer is never followed by a second hold on the card.
    pub reauthorization_generation: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// What the operator asked for (W1), validated at the edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelOptions {
    pub requested_by: RequestedBy,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub reason_detail: Option<String>,
    pub staff_note: Option<String>,
    /// Give the money back. When false, what was paid stays owed and the cancellation waits for a
    /// refund to be recorded.
    pub refund: bool,
    /// `None`: chosen from how the order was paid.
    pub refund_method: Option<RefundMethod>,
    pub restock: bool,
    pub notify_customer: bool,
}

impl Default for CancelOptions {
    fn default() -> Self {
        CancelOptions {
            requested_by: RequestedBy::Merchant,
            reason: None,
            reason_code: None,
            reason_detail: None,
            staff_note: None,
            refund: true,
            refund_method: None,
            restock: true,
            notify_customer: true,
        }
    }
}

/// Why an order cannot be cancelled as asked. Nothing changes in any of these cases.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// C7.
    #[error("order {number} is already cancelled; nothing was changed, refunded or restocked")]
    AlreadyCancelled { number: String },
    /// C2.
    #[error("order {number} has already {status}; it cannot be cancelled and must be handled as a return")]
    ReturnRequired { number: String, status: &'static str },
    /// C1, C4 without a warehouse integration, C5, closed orders.
    #[error("{message}")]
    NotCancellable { message: String },
    /// C3 until the channel's connector exists: never cancel a marketplace order only here.
    #[error("order {number} came from the {kind} channel and must be cancelled there first; cancelling at {kind} is not available yet, so nothing was changed")]
    ChannelCancelRequired { number: String, kind: ChannelKind },
    #[error("refunding {amount} to the original payment needs a payment provider integration, and none is linked to this order; choose refund_method store_credit, points or bank_transfer")]
    PaymentProviderRequired { amount: String },
    /// The refund method does not fit the order.
    #[error("refund_method `{method}` cannot be used here: {why}")]
    RefundMethodNotApplicable { method: RefundMethod, why: String },
}

/// A step as planned: what it will do, and the outcome it has when it needs no outside call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStep {
    pub kind: StepKind,
    pub status: StepStatus,
    /// What the step does (or why it is skipped), for people.
    pub action: String,
    pub fee: Option<Money>,
}

/// Everything a cancel will do (B2 shows it without doing it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelPlan {
    /// The five steps of W2, in order.
    pub steps: Vec<PlannedStep>,
    /// What goes back to the customer in total, now or later.
    pub refund_amount: Money,
    /// Refunds recorded at once, by method.
    pub immediate_refunds: Vec<(RefundMethod, Money)>,
    /// SKUs and quantities put back in stock.
    pub restock: Vec<(String, u32)>,
    pub warnings: Vec<Warning>,
    /// The cancellation's status once the steps have run.
    pub cancellation_status: CancellationStatus,
    pub financial_status: FinancialStatus,
    /// The refund method the cancellation uses, when money goes back.
    pub refund_method: Option<RefundMethod>,
}

/// Decides what cancelling `order` with `options` does (C1–C7, W2, W4–W6), or why it cannot be.
pub fn plan_cancellation(order: &Order, options: &CancelOptions) -> Result<CancelPlan, CancelError> {
    check_cancellable(order)?;
    let channel_step = plan_channel_step(order)?;
    let warehouse_step = plan_warehouse_step(order)?;
    let refund = plan_refund(order, options)?;
    let restock_step = plan_restock_step(order, options);
    let notify_step = PlannedStep {
        kind: StepKind::Notify,
        status: StepStatus::Skipped,
        action: if options.notify_customer {
            "skipped: no customer notifier is configured; tell the customer yourself".to_owned()
        } else {
            "skipped: not requested".to_owned()
        },
        fee: None,
    };

    let still_owed = refund
        .amount
        .saturating_sub(refund.immediate.iter().map(|(_, amount)| *amount).sum());
    let cancellation_status = if refund.step.status == StepStatus::Pending {
        CancellationStatus::Processing
    } else if still_owed.is_zero() {
        CancellationStatus::Completed
    } else {
        CancellationStatus::AwaitingRefund
    };
    Ok(CancelPlan {
        steps: vec![channel_step, warehouse_step, refund.step, restock_step, notify_step],
        refund_amount: refund.amount,
        immediate_refunds: refund.immediate,
        restock: Vec::new(),
        warnings: Vec::new(),
        cancellation_status,
        financial_status: refund.financial_status,
        refund_method: refund.method,
    })
}

/// C1, C2, C5, C7 and closed orders, decided by the order's statuses alone.
fn check_cancellable(order: &Order) -> Result<(), CancelError> {
    let cancellation_in_effect = order.cancellation.as_ref().is_some_and(|c| c.status.is_in_effect());
    if order.status == OrderStatus::Cancelled || cancellation_in_effect {
        return Err(CancelError::AlreadyCancelled {
            number: order.number.clone(),
        });
    }
    if order.status == OrderStatus::Closed {
        return Err(CancelError::NotCancellable {
            message: format!("order {} is closed and can no longer be cancelled", order.number),
        });
    }
    match order.fulfillment_status {
        FulfillmentStatus::AwaitingPayment
        | FulfillmentStatus::AwaitingAllocation
        | FulfillmentStatus::AwaitingConfirmation
        | FulfillmentStatus::AwaitingShipment => Ok(()),
        FulfillmentStatus::InProgress => Err(CancelError::NotCancellable {
            message: format!(
                "order {} is in the warehouse's hands (in_progress) and no warehouse integration that accepts cancellation requests handles it; ask the warehouse to stop the shipment first",
                order.number
            ),
        }),
        FulfillmentStatus::Packed => Err(CancelError::NotCancellable {
            message: format!(
                "order {} is packed and the warehouse can no longer stop it: the goods will ship; ask the recipient to refuse delivery and handle it as a return",
                order.number
            ),
        }),
        FulfillmentStatus::Shipped => Err(CancelError::ReturnRequired { number: order.number.clone(), status: "shipped" }),
        FulfillmentStatus::Delivered => {
            Err(CancelError::ReturnRequired { number: order.number.clone(), status: "been delivered" })
        }
        FulfillmentStatus::Cancelled => Err(CancelError::AlreadyCancelled { number: order.number.clone() }),
    }
}

/// C3: the channel cancels first; the own store needs no call.
fn plan_channel_step(order: &Order) -> Result<PlannedStep, CancelError> {
    if order.channel_kind.requires_channel_cancel() {
        return Err(CancelError::ChannelCancelRequired {
            number: order.number.clone(),
            kind: order.channel_kind,
        });
    }
    Ok(PlannedStep {
        kind: StepKind::ChannelCancel,
        status: StepStatus::Skipped,
        action: "skipped: own store order, cancelled in rescind".to_owned(),
        fee: None,
    })
}

/// F2 for orders without a warehouse: nothing to stop.
fn plan_warehouse_step(order: &Order) -> Result<PlannedStep, CancelError> {
    match &order.warehouse_id {
        None => Ok(PlannedStep {
            kind: StepKind::WarehouseCancel,
            status: StepStatus::Skipped,
            action: "skipped: no warehouse handles this order".to_owned(),
            fee: None,
        }),
        Some(warehouse_id) => Err(CancelError::NotCancellable {
            message: format!(
                "order {} is handled by warehouse {warehouse_id}, whose outbound request rescind cannot stop yet; nothing was changed",
                order.number
            ),
        }),
    }
}

struct RefundPlan {
    step: PlannedStep,
    amount: Money,
    immediate: Vec<(RefundMethod, Money)>,
    /// The method the rest of the money goes back by, when any is owed and refunding was asked.
    method: Option<RefundMethod>,
    financial_status: FinancialStatus,
}

/// The refund method used when the operator names none: the way the customer paid.
fn default_refund_method(order: &Order) -> RefundMethod {
    match order.payment.as_ref().map(|payment| payment.method) {
        Some(PaymentMethod::CreditCard) => RefundMethod::OriginalPayment,
        Some(PaymentMethod::BankTransfer | PaymentMethod::Cod) | None => RefundMethod::BankTransfer,
        Some(PaymentMethod::Points) => RefundMethod::Points,
        Some(PaymentMethod::StoreCredit) => RefundMethod::StoreCredit,
        Some(PaymentMethod::Channel) => RefundMethod::Channel,
    }
}

/// W4–W6: what is owed goes back — the points part as points, the rest by the chosen method.
fn plan_refund(order: &Order, options: &CancelOptions) -> Result<RefundPlan, CancelError> {
    let currency = order.currency;
    let owed = order.refundable();
    let step = |status: StepStatus, action: String| PlannedStep {
        kind: StepKind::Refund,
        status,
        action,
        fee: None,
    };
    // An order cancelled before it was paid has nothing left to collect.
    let status_when_nothing_owed = match order.financial_status {
        FinancialStatus::Pending => FinancialStatus::Voided,
        other => other,
    };

    let provider = order.payment.as_ref().and_then(|payment| payment.provider_id.as_ref());
    if order.financial_status == FinancialStatus::Authorized && provider.is_some() {
        return Ok(RefundPlan {
            step: step(
                StepStatus::Pending,
                "void the payment authorization at the payment provider".to_owned(),
            ),
            amount: Money::ZERO,
            immediate: Vec::new(),
            method: Some(RefundMethod::OriginalPayment),
            financial_status: order.financial_status,
        });
    }
    if owed.is_zero() {
        let action = match order.financial_status {
            FinancialStatus::Authorized => "skipped: nothing was captured; the authorization is left to the payment gateway (no payment provider is linked)".to_owned(),
            FinancialStatus::Pending => "skipped: nothing was paid".to_owned(),
            _ if order.total_paid.is_zero() => "skipped: nothing was paid".to_owned(),
            _ => "skipped: everything paid has already been refunded".to_owned(),
        };
        return Ok(RefundPlan {
            step: step(StepStatus::Skipped, action),
            amount: Money::ZERO,
            immediate: Vec::new(),
            method: None,
            financial_status: status_when_nothing_owed,
        });
    }
    if !options.refund {
        return Ok(RefundPlan {
            step: step(
                StepStatus::Waiting,
                format!(
                    "not requested: {} stays owed until a refund is recorded",
                    owed.format(currency)
                ),
            ),
            amount: owed,
            immediate: Vec::new(),
            method: None,
            financial_status: order.financial_status,
        });
    }

    let method = options.refund_method.unwrap_or_else(|| default_refund_method(order));
    if method == RefundMethod::Channel && !order.channel_kind.requires_channel_cancel() {
        return Err(CancelError::RefundMethodNotApplicable {
            method,
            why: "only a marketplace that collected the money refunds it itself; this is an own store order".to_owned(),
        });
    }
    let points_paid = order
        .payment
        .as_ref()
        .map_or(Money::ZERO, |payment| payment.points_amount);
    let points_refunded: Money = order
        .refunds
        .iter()
        .filter(|refund| refund.method == RefundMethod::Points)
        .map(|refund| refund.amount)
        .sum();
    let points_part = if method == RefundMethod::Points {
        owed
    } else {
        points_paid.saturating_sub(points_refunded).min(owed)
    };
    let rest = owed.saturating_sub(points_part);

    let mut immediate = Vec::new();
    if !points_part.is_zero() {
        immediate.push((RefundMethod::Points, points_part));
    }
    let rest_text = rest.format(currency);
    let step = if rest.is_zero() {
        step(
            StepStatus::Succeeded,
            format!("refunded {} as points", points_part.format(currency)),
        )
    } else {
        match method {
            RefundMethod::OriginalPayment if provider.is_some() => step(
                StepStatus::Pending,
                format!("refund {rest_text} to the original payment through the payment provider"),
            ),
            _ if needs_payment_provider(method) => {
                return Err(CancelError::PaymentProviderRequired { amount: rest_text });
            }
            RefundMethod::StoreCredit | RefundMethod::Points => {
                immediate.push((method, rest));
                step(
                    StepStatus::Succeeded,
                    format!("refunded {} as {}", owed.format(currency), method),
                )
            }
            RefundMethod::BankTransfer => step(
                StepStatus::Waiting,
                format!("waiting for the bank transfer of {rest_text} to be recorded"),
            ),
            RefundMethod::Channel => step(
                StepStatus::Waiting,
                format!("waiting for the channel to refund {rest_text}"),
            ),
            RefundMethod::OriginalPayment => {
                unreachable!("needs_payment_provider covers original_payment")
            }
        }
    };
    let refunded_now: Money = immediate.iter().map(|(_, amount)| *amount).sum();
    let refunded_after = order
        .total_refund_price
        .checked_add(refunded_now)
        .unwrap_or(order.total_refund_price);
    let financial_status = if refunded_now.is_zero() {
        order.financial_status
    } else if refunded_after >= order.total_paid {
        FinancialStatus::Refunded
    } else {
        FinancialStatus::PartiallyRefunded
    };
    Ok(RefundPlan {
        step,
        amount: owed,
        immediate,
        method: Some(method),
        financial_status,
    })
}

/// I2 and I4 as far as this version keeps stock: the messages say why nothing is put back.
fn plan_restock_step(order: &Order, options: &CancelOptions) -> PlannedStep {
    let action = if !options.restock {
        "skipped: not requested"
    } else if !order.inventory_deducted {
        "not run: stock was never deducted for this order"
    } else {
        "not run: stock keeping is not enabled in this version; adjust stock by hand"
    };
    PlannedStep {
        kind: StepKind::Restock,
        status: StepStatus::Skipped,
        action: action.to_owned(),
        fee: None,
    }
}

/// Cancels `order` as `options` ask (C1–C7, W1–W6): the plan, and the order's new state with its
/// history. Refunds that need no outside call are recorded at once.
pub fn cancel_order(
    order: &Order,
    options: &CancelOptions,
    actor: &Actor,
    ids: &mut dyn IdSource,
    now: Timestamp,
) -> Result<(CancelPlan, OrderChange), CancelError> {
    let plan = plan_cancellation(order, options)?;
    let mut order = order.clone();
    let statuses_before = (order.fulfillment_status, order.financial_status);
    let cancellation_id = ids.new_id("can");
    let currency = order.currency;

    let mut history = vec![HistoryEntry::new(
        now,
        "cancellation.created",
        actor,
        match &options.reason {
            Some(reason) => format!("Cancellation requested by {}: {reason}", options.requested_by),
            None => format!("Cancellation requested by {}.", options.requested_by),
        },
    )
    .with("cancellation_id", &cancellation_id)
    .with("requested_by", options.requested_by)];

    let steps: Vec<Step> = plan
        .steps
        .iter()
        .map(|planned| Step {
            kind: planned.kind,
            status: planned.status,
            message: planned.action.clone(),
            attempts: match planned.status {
                StepStatus::Succeeded | StepStatus::Failed => 1,
                StepStatus::Pending | StepStatus::Running | StepStatus::Skipped | StepStatus::Waiting => 0,
            },
            generation: 0,
            last_error: None,
            updated_at: now,
        })
        .collect();
    for step in &steps {
        history.push(
            HistoryEntry::new(
                now,
                &format!("step.{}", step.kind),
                actor,
                format!("{}: {}", step.kind, step.message),
            )
            .with("status", step.status),
        );
    }

    let refunds: Vec<Refund> = plan
        .immediate_refunds
        .iter()
        .map(|(method, amount)| Refund {
            id: ids.new_id("ref"),
            amount: *amount,
            method: *method,
            note: Some("refund on cancellation".to_owned()),
            cancellation_id: Some(cancellation_id.clone()),
            actor: actor.label(),
            created_at: now,
        })
        .collect();
    for refund in &refunds {
        history.push(
            HistoryEntry::new(
                now,
                "refund.recorded",
                actor,
                format!(
                    "Refund of {} recorded ({}).",
                    refund.amount.format(currency),
                    refund.method
                ),
            )
            .with("refund_id", &refund.id)
            .with("amount", refund.amount.format(currency))
            .with("method", refund.method),
        );
    }
    apply_refunds(&mut order, &refunds, now);
    order.financial_status = plan.financial_status;

    order.status = OrderStatus::Cancelled;
    order.fulfillment_status = FulfillmentStatus::Cancelled;
    order.canceled_at = Some(now);
    order.cancel_reason = options.reason.clone().or_else(|| options.reason_code.clone());
    order.updated_at = now;
    for line in &mut order.line_items {
        line.cancelled_quantity = line.quantity;
    }
    history.push(HistoryEntry::new(
        now,
        "order.cancelled",
        actor,
        "Order cancelled; it will not ship.",
    ));

    let completed = plan.cancellation_status == CancellationStatus::Completed;
    history.push(
        HistoryEntry::new(
            now,
            &format!("cancellation.{}", plan.cancellation_status),
            actor,
            match plan.cancellation_status {
                CancellationStatus::Completed => "Cancellation completed.".to_owned(),
                CancellationStatus::Processing => {
                    "Cancellation processing: the payment provider is being asked.".to_owned()
                }
                _ => format!(
                    "Cancellation awaiting refund: {} is still owed.",
                    order.refundable().format(currency)
                ),
            },
        )
        .with("cancellation_id", &cancellation_id),
    );

    order.cancellation = Some(Cancellation {
        id: cancellation_id,
        status: plan.cancellation_status,
        requested_by: options.requested_by,
        reason: options.reason.clone(),
        reason_code: options.reason_code.clone(),
        reason_detail: options.reason_detail.clone(),
        staff_note: options.staff_note.clone(),
        refund: options.refund,
        refund_method: plan.refund_method,
        restock: options.restock,
        notify_customer: options.notify_customer,
        needs_attention: false,
        steps,
        fulfillment_status_before: statuses_before.0,
        financial_status_before: statuses_before.1,
        reauthorization_generation: 0,
        created_at: now,
        updated_at: now,
        completed_at: completed.then_some(now),
    });
    let workflow = if plan.cancellation_status == CancellationStatus::Processing {
        WorkflowSchedule::DueAt(now)
    } else {
        WorkflowSchedule::Unchanged
    };
    let change = OrderChange {
        order,
        history,
        new_refunds: refunds,
        workflow,
    };
    Ok((plan, change))
}

impl Cancellation {
    /// The step of this kind (every cancellation has all five).
    pub fn step(&self, kind: StepKind) -> Option<&Step> {
        self.steps.iter().find(|step| step.kind == kind)
    }
}
