//! The cancellation (PRODUCT.md §2, §3): whether an order may be cancelled, which steps follow and what
//! each does, and the order's state afterwards. [`plan_cancellation`] decides without changing anything
//! (it also answers dry runs); [`cancel_order`] turns the plan into the order's new state.

use crate::channel::ChannelKind;
use crate::history::{Actor, HistoryEntry};
use crate::ids::IdSource;
use crate::money::Money;
use crate::order::{
    FinancialStatus, FulfillmentStatus, LineItem, Order, OrderChange, OrderStatus, PaymentMethod, Warning,
    WorkflowSchedule,
};
use crate::reasons::check_reason;
use crate::refund::{apply_refunds, needs_payment_provider, Refund, RefundMethod};
use crate::time::Timestamp;
use crate::warehouse::{OutboundStatus, WarehouseSettings};

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

impl StepKind {
    /// The kind of the history line of this step's outcome: `step.` and the step's name.
    pub const fn history_kind(self) -> &'static str {
        match self {
            StepKind::ChannelCancel => "step.channel_cancel",
            StepKind::WarehouseCancel => "step.warehouse_cancel",
            StepKind::Refund => "step.refund",
            StepKind::Restock => "step.restock",
            StepKind::Notify => "step.notify",
        }
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

/// A quantity of one line taken out of an order by a partial cancellation (B1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelledLine {
    pub line_item_id: String,
    pub sku: String,
    pub quantity: u32,
}

/// What a cancellation cancels (B1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelScope {
    /// The whole order, or all that was left of it. `after_partial`: some of its lines had been
    /// cancelled on their own before.
    Order { after_partial: bool },
    /// Some quantities of some lines; the order stays open and ships the rest.
    Lines {
        lines: Vec<CancelledLine>,
        /// What this cancellation gives back: the lines' price with their share of tax and discount.
        refund_amount: Money,
        /// What goes back to stock: the cancelled quantities, as far as the deduction snapshot holds them (I3).
        restock: Vec<(String, u32)>,
    },
}

impl CancelScope {
    pub const fn is_partial(&self) -> bool {
        match self {
            CancelScope::Order { .. } => false,
            CancelScope::Lines { .. } => true,
        }
    }
}

/// A cancellation of an order (W1, W3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancellation {
    pub id: String,
    pub status: CancellationStatus,
    pub scope: CancelScope,
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
    /// A fee the warehouse charges for stopping the goods (a cancellation request, C4).
    pub fee: Option<Money>,
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
    /// The channel's `cancel_sync` setting (H4): when off, rescind records the cancel without calling
    /// the channel, and the operator cancels in the channel's own admin.
    pub channel_cancel_sync: bool,
    /// The settings of the order's warehouse integration, when it has one (C4, F2).
    pub warehouse: Option<WarehouseSettings>,
    /// Cancel only these quantities of these lines (B1): `(line_item_id, quantity)`. Empty: the whole order.
    pub lines: Vec<(String, u32)>,
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
            channel_cancel_sync: true,
            warehouse: None,
            lines: Vec::new(),
        }
    }
}

impl CancelOptions {
    /// The options a cancellation was started with, to plan its later steps.
    pub fn of(cancellation: &Cancellation) -> CancelOptions {
        CancelOptions {
            requested_by: cancellation.requested_by,
            reason: cancellation.reason.clone(),
            reason_code: cancellation.reason_code.clone(),
            reason_detail: cancellation.reason_detail.clone(),
            staff_note: cancellation.staff_note.clone(),
            refund: cancellation.refund,
            refund_method: cancellation.refund_method,
            restock: cancellation.restock,
            notify_customer: cancellation.notify_customer,
            channel_cancel_sync: true,
            warehouse: None,
            lines: match &cancellation.scope {
                CancelScope::Order { .. } => Vec::new(),
                CancelScope::Lines { lines, .. } => lines
                    .iter()
                    .map(|line| (line.line_item_id.clone(), line.quantity))
                    .collect(),
            },
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
    /// H2: the reason code or detail does not fit the order's channel.
    #[error("the cancel reason does not fit the {kind} channel")]
    InvalidReason { kind: ChannelKind, problems: Vec<String> },
    #[error("refunding {amount} to the original payment needs a payment provider integration, and none is linked to this order; choose refund_method store_credit, points or bank_transfer")]
    PaymentProviderRequired { amount: String },
    /// The refund method does not fit the order.
    #[error("refund_method `{method}` cannot be used here: {why}")]
    RefundMethodNotApplicable { method: RefundMethod, why: String },
    /// B1: the lines asked for do not fit the order.
    #[error("the lines to cancel do not fit the order")]
    InvalidLines { problems: Vec<String> },
    /// B1: the channel cancels whole orders only.
    #[error("{kind} cannot cancel part of an order through its API; cancel the whole order, or turn cancel_sync off for this channel and change the order in {kind}'s own admin")]
    PartialCancelUnsupported { kind: ChannelKind },
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
    /// The whole order, or which lines (B1).
    pub scope: CancelScope,
}

/// Decides what cancelling `order` with `options` does (C1–C7, H2, W2, W4–W6), or why it cannot be.
pub fn plan_cancellation(order: &Order, options: &CancelOptions) -> Result<CancelPlan, CancelError> {
    check_cancellable(order, options)?;
    check_reason(
        order.channel_kind,
        options.reason_code.as_deref(),
        options.reason_detail.as_deref(),
    )
    .map_err(|problems| CancelError::InvalidReason {
        kind: order.channel_kind,
        problems,
    })?;
    let scope = cancel_scope(order, options)?;
    let channel_step = plan_channel_step(order, options, &scope);
    plan_steps(
        order,
        options,
        scope,
        channel_step,
        plan_warehouse_step(order, options)?,
    )
}

/// B1: what the cancel covers. Lines that leave nothing of the order are the whole order; otherwise the
/// channel must be able to cancel lines, the warehouse must not hold the order yet, and the lines'
/// refund is their price plus their share of tax and minus their share of discount. The shares are
/// taken of everything cancelled so far minus what earlier cancellations took, so rounding never
/// drifts: the last line gives back exactly what is left (with shipping).
pub(crate) fn cancel_scope(order: &Order, options: &CancelOptions) -> Result<CancelScope, CancelError> {
    let after_partial = order.line_items.iter().any(|line| line.cancelled_quantity > 0);
    if options.lines.is_empty() {
        return Ok(CancelScope::Order { after_partial });
    }
    let mut problems = Vec::new();
    let mut lines: Vec<CancelledLine> = Vec::new();
    for (index, (line_item_id, quantity)) in options.lines.iter().enumerate() {
        let field = format!("line_items[{index}]");
        let Some(line) = order.line_items.iter().find(|line| line.id == *line_item_id) else {
            problems.push(format!(
                "{field}.line_item_id: order {} has no line `{line_item_id}`",
                order.number
            ));
            continue;
        };
        let left = line.quantity.saturating_sub(line.cancelled_quantity);
        if lines.iter().any(|taken| taken.line_item_id == *line_item_id) {
            problems.push(format!("{field}.line_item_id: line {line_item_id} is named twice"));
        } else if *quantity == 0 {
            problems.push(format!("{field}.quantity: must be at least 1"));
        } else if *quantity > left {
            problems.push(format!(
                "{field}.quantity: line {line_item_id} ({}) has {left} left to cancel, not {quantity}",
                line.sku
            ));
        } else {
            lines.push(CancelledLine {
                line_item_id: line_item_id.clone(),
                sku: line.sku.clone(),
                quantity: *quantity,
            });
        }
    }
    if !problems.is_empty() {
        return Err(CancelError::InvalidLines { problems });
    }
    let asked = |line_item_id: &str| {
        lines
            .iter()
            .find(|line| line.line_item_id == line_item_id)
            .map_or(0, |line| line.quantity)
    };
    if order
        .line_items
        .iter()
        .all(|line| line.cancelled_quantity + asked(&line.id) >= line.quantity)
    {
        return Ok(CancelScope::Order { after_partial });
    }
    let kind = order.channel_kind;
    if kind.requires_channel_cancel() && options.channel_cancel_sync && !kind.cancels_lines() {
        return Err(CancelError::PartialCancelUnsupported { kind });
    }
    if order
        .outbound
        .as_ref()
        .is_some_and(|outbound| outbound.status != OutboundStatus::Deleted)
    {
        return Err(CancelError::NotCancellable {
            message: format!(
                "order {} has an outbound request at the warehouse, which would still ship the cancelled lines; change the order's lines (PATCH, sent to the warehouse as a modification) or cancel the whole order",
                order.number
            ),
        });
    }

    let currency = order.currency;
    let value = |quantity: &dyn Fn(&LineItem) -> u32| -> Money {
        order
            .line_items
            .iter()
            .filter_map(|line| line.price.checked_mul(quantity(line)))
            .sum()
    };
    let whole = value(&|line| line.quantity);
    let share = |part: Money| {
        part.checked_add(order.total_tax.share(part, whole, currency))
            .unwrap_or(part)
            .saturating_sub(order.total_discount.share(part, whole, currency))
    };
    let before = share(value(&|line| line.cancelled_quantity));
    let after = share(value(&|line| line.cancelled_quantity + asked(&line.id)));
    let refund_amount = after.saturating_sub(before).min(order.refundable());

    let mut restock = Vec::new();
    if options.restock && order.inventory_deducted {
        let mut left: Vec<(String, u32)> = order.stock_snapshot.clone();
        for line in &lines {
            if let Some((_, held)) = left.iter_mut().find(|(sku, _)| *sku == line.sku) {
                let quantity = line.quantity.min(*held);
                *held -= quantity;
                if quantity > 0 {
                    match restock
                        .iter_mut()
                        .find(|(sku, _): &&mut (String, u32)| *sku == line.sku)
                    {
                        Some((_, total)) => *total += quantity,
                        None => restock.push((line.sku.clone(), quantity)),
                    }
                }
            }
        }
    }
    Ok(CancelScope::Lines {
        lines,
        refund_amount,
        restock,
    })
}

/// The steps after the channel's: what the warehouse, the refund, the restock and the notification do.
pub(crate) fn plan_steps(
    order: &Order,
    options: &CancelOptions,
    scope: CancelScope,
    channel_step: PlannedStep,
    warehouse_step: PlannedStep,
) -> Result<CancelPlan, CancelError> {
    let refund = plan_refund(order, options, &scope)?;
    let restock_step = plan_restock_step(order, options, &scope);
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
    let gate_open = |step: &PlannedStep| matches!(step.status, StepStatus::Pending | StepStatus::Waiting);
    let cancellation_status = if gate_open(&channel_step)
        || gate_open(&warehouse_step)
        || refund.step.status == StepStatus::Pending
        || restock_step.status == StepStatus::Pending
    {
        CancellationStatus::Processing
    } else if still_owed.is_zero() {
        CancellationStatus::Completed
    } else {
        CancellationStatus::AwaitingRefund
    };
    let restock = if restock_step.status == StepStatus::Pending {
        order.restock_quantities(&scope)
    } else {
        Vec::new()
    };
    Ok(CancelPlan {
        steps: vec![channel_step, warehouse_step, refund.step, restock_step, notify_step],
        refund_amount: refund.amount,
        immediate_refunds: refund.immediate,
        restock,
        warnings: Vec::new(),
        cancellation_status,
        financial_status: refund.financial_status,
        refund_method: refund.method,
        scope,
    })
}

/// C1, C2, C5, C7 and closed orders, decided by the order's statuses alone.
pub(crate) fn check_cancellable(order: &Order, options: &CancelOptions) -> Result<(), CancelError> {
    if order.status == OrderStatus::Cancelled || order.whole_cancellation_in_effect() {
        return Err(CancelError::AlreadyCancelled {
            number: order.number.clone(),
        });
    }
    if order
        .cancellation
        .as_ref()
        .is_some_and(|c| c.scope.is_partial() && c.status == CancellationStatus::Processing)
    {
        return Err(CancelError::NotCancellable {
            message: format!(
                "a cancellation of some lines of order {} is still being carried out; cancel again once it has finished",
                order.number
            ),
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
        FulfillmentStatus::InProgress
            if order.outbound.is_some() && options.warehouse.is_some_and(|settings| settings.cancel_after_confirmation) =>
        {
            Ok(())
        }
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

/// C3: a marketplace cancels first, through its API; the own store needs no call; a channel without
/// cancel sync (H4) is cancelled by the operator in its own admin.
fn plan_channel_step(order: &Order, options: &CancelOptions, scope: &CancelScope) -> PlannedStep {
    let kind = order.channel_kind;
    let (status, action) = if !kind.requires_channel_cancel() {
        (
            StepStatus::Skipped,
            "skipped: own store order, cancelled in rescind".to_owned(),
        )
    } else if !options.channel_cancel_sync {
        (
            StepStatus::Skipped,
            format!(
                "skipped: cancel sync is off for this {kind} channel; cancel the order in {kind}'s own admin too \
                 (rescind records the cancellation without calling {kind}), and stop the warehouse outbound by hand \
                 if the warehouse integration cannot"
            ),
        )
    } else {
        let reason = options
            .reason_code
            .as_deref()
            .map(|code| format!(" with reason {code}"))
            .unwrap_or_default();
        match scope {
            CancelScope::Order { .. } => (StepStatus::Pending, format!("cancel at {kind}{reason}")),
            CancelScope::Lines { lines, .. } => (
                StepStatus::Pending,
                format!("cancel {} at {kind}{reason}", describe_lines(lines)),
            ),
        }
    };
    PlannedStep {
        kind: StepKind::ChannelCancel,
        status,
        action,
        fee: None,
    }
}

/// F2, C4, C5: what the warehouse step does with the order's outbound request.
fn plan_warehouse_step(order: &Order, options: &CancelOptions) -> Result<PlannedStep, CancelError> {
    let step = |status, action: String| {
        Ok(PlannedStep {
            kind: StepKind::WarehouseCancel,
            status,
            action,
            fee: None,
        })
    };
    if order.warehouse_id.is_none() {
        return step(
            StepStatus::Skipped,
            "skipped: no warehouse handles this order".to_owned(),
        );
    }
    let Some(outbound) = order
        .outbound
        .as_ref()
        .filter(|outbound| outbound.status != OutboundStatus::Deleted)
    else {
        return step(
            StepStatus::Skipped,
            "skipped: no outbound request is at the warehouse".to_owned(),
        );
    };
    let external = outbound.external_id.as_deref().unwrap_or("being created");
    let cancel_after_confirmation = options
        .warehouse
        .is_some_and(|settings| settings.cancel_after_confirmation);
    match outbound.status {
        OutboundStatus::Requested => {
            step(StepStatus::Pending, "find the outbound request at the warehouse and delete it".to_owned())
        }
        status if status.deletable() => {
            step(StepStatus::Pending, format!("delete the outbound request {external} ({status})"))
        }
        status if status.cancel_requestable() && cancel_after_confirmation => step(
            StepStatus::Pending,
            format!(
                "ask the warehouse to cancel the outbound request {external} ({status}); a fee applies, and until it accepts the goods may still ship"
            ),
        ),
        OutboundStatus::CancelRequest => {
            step(StepStatus::Waiting, "a cancellation request is already with the warehouse".to_owned())
        }
        status if status.too_late() => Err(CancelError::NotCancellable {
            message: format!(
                "order {} is {status} at the warehouse, which can no longer stop it: the goods will ship; ask the recipient to refuse delivery and handle it as a return",
                order.number
            ),
        }),
        status => Err(CancelError::NotCancellable {
            message: format!(
                "order {} is in the warehouse's hands ({status}) and the warehouse takes no cancellation request from rescind now (it does only while picking, and only when the integration sends them); ask the warehouse to stop the shipment",
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

/// W4–W6: what is owed goes back — the points part as points, the rest by the chosen method. A
/// partial cancellation owes its lines' share (B1).
fn plan_refund(order: &Order, options: &CancelOptions, scope: &CancelScope) -> Result<RefundPlan, CancelError> {
    let currency = order.currency;
    let owed = match scope {
        CancelScope::Order { .. } => order.refundable(),
        CancelScope::Lines { refund_amount, .. } => *refund_amount,
    };
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
    if order.financial_status == FinancialStatus::Authorized && scope.is_partial() {
        return Ok(RefundPlan {
            step: step(
                StepStatus::Skipped,
                format!(
                    "skipped: nothing was captured yet; capture {} less than authorized when the rest ships",
                    owed.format(currency)
                ),
            ),
            amount: Money::ZERO,
            immediate: Vec::new(),
            method: None,
            financial_status: order.financial_status,
        });
    }
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
            financial_status: if scope.is_partial() {
                order.financial_status
            } else {
                status_when_nothing_owed
            },
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
            RefundMethod::Channel => {
                immediate.push((method, rest));
                step(
                    StepStatus::Succeeded,
                    format!(
                        "refunded {rest_text} by {} (the channel collected the money)",
                        order.channel_kind
                    ),
                )
            }
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

/// I2 and I4: the restock runs only when asked, for an order whose stock was deducted and never put
/// back; it puts back the deduction snapshot's quantities (I3), once, in the worker (the database makes
/// a second restock of the same cancellation impossible).
fn plan_restock_step(order: &Order, options: &CancelOptions, scope: &CancelScope) -> PlannedStep {
    let quantities = order.restock_quantities(scope);
    let (status, action) = if !options.restock {
        (StepStatus::Skipped, "skipped: not requested".to_owned())
    } else if !order.inventory_deducted {
        (
            StepStatus::Skipped,
            "not run: stock was never deducted for this order".to_owned(),
        )
    } else if order.restocked || quantities.is_empty() {
        (
            StepStatus::Skipped,
            "skipped: already restocked (or in progress)".to_owned(),
        )
    } else {
        (
            StepStatus::Pending,
            format!("restock {}", crate::inventory::describe_stock(&quantities)),
        )
    };
    PlannedStep {
        kind: StepKind::Restock,
        status,
        action,
        fee: None,
    }
}

/// Cancels `order` as `options` ask (C1–C7, W1–W6). A marketplace order only starts its cancellation
/// here: the channel step is left for the worker, and the order is cancelled when the channel
/// confirms (C3). Any other order is cancelled at once; refunds that need no outside call are recorded.
/// Takes the order itself: the change is made on it, not on a copy (the group writer hands over the
/// order it loaded).
pub fn cancel_order(
    mut order: Order,
    options: &CancelOptions,
    actor: &Actor,
    ids: &mut dyn IdSource,
    now: Timestamp,
) -> Result<(CancelPlan, OrderChange), CancelError> {
    let plan = plan_cancellation(&order, options)?;
    let cancellation_id = ids.new_id("can");
    let what = match &plan.scope {
        CancelScope::Order { .. } => String::new(),
        CancelScope::Lines { lines, .. } => format!(" of {}", describe_lines(lines)),
    };
    let mut history = vec![HistoryEntry::new(
        now,
        "cancellation.created",
        actor,
        match &options.reason {
            Some(reason) => format!("Cancellation{what} requested by {}: {reason}", options.requested_by),
            None => format!("Cancellation{what} requested by {}.", options.requested_by),
        },
    )
    .with("cancellation_id", cancellation_id.clone())
    .with("requested_by", options.requested_by.as_str())];
    // The channel and the warehouse are gates: until both have stopped the order, it is not cancelled (W4).
    let gated = plan.steps.iter().any(|step| {
        matches!(step.kind, StepKind::ChannelCancel | StepKind::WarehouseCancel)
            && matches!(step.status, StepStatus::Pending | StepStatus::Waiting)
    });
    let steps = plan
        .steps
        .iter()
        .map(|planned| {
            let waits = gated && !matches!(planned.kind, StepKind::ChannelCancel | StepKind::WarehouseCancel);
            Step {
                kind: planned.kind,
                status: if waits { StepStatus::Pending } else { planned.status },
                message: if waits {
                    format!("waits for the channel and the warehouse, then: {}", planned.action)
                } else {
                    planned.action.clone()
                },
                attempts: 0,
                generation: 0,
                last_error: None,
                updated_at: now,
            }
        })
        .collect();
    order.cancellation = Some(Cancellation {
        id: cancellation_id.clone(),
        status: CancellationStatus::Processing,
        scope: plan.scope.clone(),
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
        fulfillment_status_before: order.fulfillment_status,
        financial_status_before: order.financial_status,
        reauthorization_generation: 0,
        fee: None,
        created_at: now,
        updated_at: now,
        completed_at: None,
    });
    // A customer asked to cancel the order; cancelling some of its lines does not answer that.
    if !plan.scope.is_partial() {
        crate::request::grant_open_request(
            &mut order,
            &cancellation_id,
            options.reason.as_deref(),
            actor,
            now,
            &mut history,
        );
    }
    // The gates' steps are set here once; the later ones by apply_cancellation.
    for planned in plan
        .steps
        .iter()
        .filter(|step| matches!(step.kind, StepKind::ChannelCancel | StepKind::WarehouseCancel))
    {
        history.push(
            HistoryEntry::new(
                now,
                planned.kind.history_kind(),
                actor,
                [planned.kind.as_str(), ": ", &planned.action].concat(),
            )
            .with("status", planned.status.as_str()),
        );
    }
    if gated {
        history.push(
            HistoryEntry::new(
                now,
                "cancellation.processing",
                actor,
                "Cancellation processing: the channel and the warehouse are asked to stop the order first; it stays open until they have.".to_owned(),
            )
            .with("cancellation_id", cancellation_id.clone()),
        );
        order.updated_at = now;
        return Ok((
            plan,
            OrderChange {
                order,
                history,
                new_refunds: Vec::new(),
                workflow: WorkflowSchedule::DueAt(now),
                sync: Vec::new(),
                stock_moves: Vec::new(),
            },
        ));
    }
    let (refunds, workflow) = apply_cancellation(&mut order, &plan, options, actor, ids, now, &mut history);
    Ok((
        plan,
        OrderChange {
            order,
            history,
            new_refunds: refunds,
            workflow,
            sync: Vec::new(),
            stock_moves: Vec::new(),
        },
    ))
}

/// The order can no longer ship (W4): it becomes cancelled, the refunds that need no outside call are
/// recorded, and its cancellation's steps take the plan's outcomes (the channel step keeps its own).
pub(crate) fn apply_cancellation(
    order: &mut Order,
    plan: &CancelPlan,
    options: &CancelOptions,
    actor: &Actor,
    ids: &mut dyn IdSource,
    now: Timestamp,
    history: &mut Vec<HistoryEntry>,
) -> (Vec<Refund>, WorkflowSchedule) {
    let currency = order.currency;
    let cancellation = order.cancellation.as_mut().expect("a cancellation is being applied");
    let cancellation_id = cancellation.id.clone();
    for planned in &plan.steps {
        let Some(step) = cancellation.steps.iter_mut().find(|step| step.kind == planned.kind) else {
            continue;
        };
        // The gates' outcomes are their own, set when the cancellation began or by the partners.
        if matches!(step.kind, StepKind::ChannelCancel | StepKind::WarehouseCancel) {
            continue;
        }
        step.status = planned.status;
        step.message = planned.action.clone();
        step.attempts = match planned.status {
            StepStatus::Succeeded | StepStatus::Failed => step.attempts.max(1),
            StepStatus::Pending | StepStatus::Running | StepStatus::Skipped | StepStatus::Waiting => step.attempts,
        };
        step.updated_at = now;
        history.push(
            HistoryEntry::new(
                now,
                step.kind.history_kind(),
                actor,
                [step.kind.as_str(), ": ", &step.message].concat(),
            )
            .with("status", step.status.as_str()),
        );
    }
    cancellation.refund_method = plan.refund_method;
    let refunds: Vec<Refund> = plan
        .immediate_refunds
        .iter()
        .map(|(method, amount)| Refund {
            id: ids.new_id("ref"),
            amount: *amount,
            method: *method,
            note: Some(match method {
                RefundMethod::Channel => format!("refunded by {}", order.channel_kind),
                _ => "refund on cancellation".to_owned(),
            }),
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
            .with("refund_id", refund.id.clone())
            .with("amount", refund.amount.format(currency))
            .with("method", refund.method.as_str()),
        );
    }
    apply_refunds(order, &refunds, now);
    order.financial_status = plan.financial_status;
    order.updated_at = now;
    match &plan.scope {
        CancelScope::Order { .. } => {
            order.status = OrderStatus::Cancelled;
            order.fulfillment_status = FulfillmentStatus::Cancelled;
            order.canceled_at = Some(now);
            order.cancel_reason = options.reason.clone().or_else(|| options.reason_code.clone());
            for line in &mut order.line_items {
                line.cancelled_quantity = line.quantity;
            }
            history.push(HistoryEntry::new(
                now,
                "order.cancelled",
                actor,
                "Order cancelled; it will not ship.",
            ));
        }
        CancelScope::Lines { lines, .. } => {
            for cancelled in lines {
                if let Some(line) = order
                    .line_items
                    .iter_mut()
                    .find(|line| line.id == cancelled.line_item_id)
                {
                    line.cancelled_quantity = (line.cancelled_quantity + cancelled.quantity).min(line.quantity);
                }
            }
            history.push(HistoryEntry::new(
                now,
                "order.lines_cancelled",
                actor,
                format!(
                    "Cancelled {}; the rest of the order still ships.",
                    describe_lines(lines)
                ),
            ));
        }
    }

    let refundable = order.owed_for_cancellation();
    let cancellation = order.cancellation.as_mut().expect("a cancellation is being applied");
    cancellation.status = plan.cancellation_status;
    cancellation.updated_at = now;
    if plan.cancellation_status == CancellationStatus::Completed {
        cancellation.completed_at = Some(now);
    }
    history.push(
        HistoryEntry::new(
            now,
            ["cancellation.", plan.cancellation_status.as_str()].concat(),
            actor,
            match plan.cancellation_status {
                CancellationStatus::Completed => "Cancellation completed.".to_owned(),
                CancellationStatus::Processing => {
                    "Cancellation processing: the payment provider is being asked.".to_owned()
                }
                _ => format!(
                    "Cancellation awaiting refund: {} is still owed.",
                    refundable.format(currency)
                ),
            },
        )
        .with("cancellation_id", cancellation_id.clone()),
    );
    let workflow = match plan.cancellation_status {
        CancellationStatus::Processing => WorkflowSchedule::DueAt(now),
        _ => WorkflowSchedule::Finished,
    };
    (refunds, workflow)
}

/// A gate (the channel, the warehouse) has done its part: when no gate is left, the order is
/// cancelled here too and the later steps run (C3, W4). When they cannot be planned (a refund method
/// that no longer fits), the refund step fails and an operator is asked; the order is cancelled all
/// the same, since the channel and the warehouse have stopped it.
pub(crate) fn continue_after_gate(
    order: &mut Order,
    actor: &Actor,
    ids: &mut dyn IdSource,
    now: Timestamp,
    history: &mut Vec<HistoryEntry>,
) -> (Vec<Refund>, WorkflowSchedule) {
    let cancellation = order.cancellation.as_ref().expect("a cancellation is being continued");
    let gate = |kind| {
        let step = cancellation.step(kind).expect("every cancellation has its five steps");
        PlannedStep {
            kind,
            status: step.status,
            action: step.message.clone(),
            fee: None,
        }
    };
    let (channel, warehouse) = (gate(StepKind::ChannelCancel), gate(StepKind::WarehouseCancel));
    if channel.status == StepStatus::Pending || warehouse.status == StepStatus::Pending {
        return (Vec::new(), WorkflowSchedule::DueAt(now));
    }
    if warehouse.status == StepStatus::Waiting {
        return (Vec::new(), WorkflowSchedule::Finished);
    }
    let options = CancelOptions::of(cancellation);
    let scope = cancellation.scope.clone();
    match plan_steps(order, &options, scope.clone(), channel.clone(), warehouse.clone()) {
        Ok(plan) => apply_cancellation(order, &plan, &options, actor, ids, now, history),
        Err(error) => {
            let mut fallback = plan_steps(
                order,
                &CancelOptions {
                    refund: false,
                    ..options.clone()
                },
                scope,
                channel,
                warehouse,
            )
            .expect("without a refund the later steps always plan");
            if let Some(refund) = fallback.steps.iter_mut().find(|step| step.kind == StepKind::Refund) {
                refund.status = StepStatus::Failed;
                refund.action = format!("failed: {error}");
            }
            fallback.cancellation_status = CancellationStatus::AwaitingRefund;
            let outcome = apply_cancellation(order, &fallback, &options, actor, ids, now, history);
            if let Some(cancellation) = order.cancellation.as_mut() {
                cancellation.needs_attention = true;
            }
            outcome
        }
    }
}

/// The channel reports an order cancelled on its side (H3): the same workflow runs from the warehouse
/// step on, once — a second report of the same cancel changes nothing.
pub fn cancelled_at_channel(
    order: &Order,
    reason: Option<String>,
    source: &str,
    warehouse: Option<WarehouseSettings>,
    ids: &mut dyn IdSource,
    now: Timestamp,
) -> Result<OrderChange, CancelError> {
    if order.status == OrderStatus::Cancelled || order.whole_cancellation_in_effect() {
        return Err(CancelError::AlreadyCancelled {
            number: order.number.clone(),
        });
    }
    let actor = Actor::System;
    let mut order = order.clone();
    let cancellation_id = ids.new_id("can");
    let kind = order.channel_kind;
    let mut history = vec![HistoryEntry::new(
        now,
        "cancellation.created",
        &actor,
        format!(
            "{kind} reports the order cancelled on its side ({source}){}",
            reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
    )
    .with("cancellation_id", cancellation_id.clone())
    .with("requested_by", RequestedBy::Channel.as_str())];
    let steps = StepKind::ALL
        .iter()
        .map(|kind| Step {
            kind: *kind,
            status: StepStatus::Pending,
            message: String::new(),
            attempts: 0,
            generation: 0,
            last_error: None,
            updated_at: now,
        })
        .collect();
    let shipped = order.fulfillment_status.has_shipped();
    let after_partial = order.line_items.iter().any(|line| line.cancelled_quantity > 0);
    order.cancellation = Some(Cancellation {
        id: cancellation_id.clone(),
        status: CancellationStatus::Processing,
        scope: CancelScope::Order { after_partial },
        requested_by: RequestedBy::Channel,
        reason: reason.clone(),
        reason_code: None,
        reason_detail: None,
        staff_note: None,
        refund: true,
        refund_method: None,
        restock: true,
        notify_customer: false,
        needs_attention: false,
        steps,
        fulfillment_status_before: order.fulfillment_status,
        financial_status_before: order.financial_status,
        reauthorization_generation: 0,
        fee: None,
        created_at: now,
        updated_at: now,
        completed_at: None,
    });
    crate::request::grant_open_request(
        &mut order,
        &cancellation_id,
        reason.as_deref(),
        &actor,
        now,
        &mut history,
    );
    // The warehouse step runs as for any cancel; one the warehouse can no longer stop is an
    // operator's to handle, since the channel has cancelled the sale already.
    let warehouse_options = CancelOptions {
        warehouse,
        ..CancelOptions::default()
    };
    let warehouse_step = plan_warehouse_step(&order, &warehouse_options);
    if let Some(cancellation) = order.cancellation.as_mut() {
        for step in &mut cancellation.steps {
            match step.kind {
                StepKind::ChannelCancel => {
                    step.status = StepStatus::Succeeded;
                    step.message = format!("cancelled at {kind} ({source})");
                }
                StepKind::WarehouseCancel => match &warehouse_step {
                    Ok(planned) => {
                        step.status = planned.status;
                        step.message = planned.action.clone();
                    }
                    Err(error) => {
                        step.status = StepStatus::Failed;
                        step.message = format!("failed: {error}");
                        step.last_error = Some(error.to_string());
                        cancellation.needs_attention = true;
                    }
                },
                StepKind::Refund | StepKind::Restock | StepKind::Notify => {}
            }
        }
    }
    history.push(
        HistoryEntry::new(
            now,
            "step.channel_cancel",
            &actor,
            format!("channel_cancel: cancelled at {kind} ({source})"),
        )
        .with("status", StepStatus::Succeeded.as_str()),
    );
    let (refunds, workflow) = continue_after_gate(&mut order, &actor, ids, now, &mut history);
    if shipped {
        order.add_warning(Warning::ShippedAfterCancel);
        history.push(HistoryEntry::new(
            now,
            "warning.shipped_after_cancel",
            &actor,
            format!("{kind} cancelled an order that had already shipped: handle the goods as a return."),
        ));
    }
    Ok(OrderChange {
        order,
        history,
        new_refunds: refunds,
        workflow,
        sync: Vec::new(),
        stock_moves: Vec::new(),
    })
}

/// `2 × TEA-001, 1 × MUG-002`: the lines of a partial cancellation, for people.
pub(crate) fn describe_lines(lines: &[CancelledLine]) -> String {
    lines
        .iter()
        .map(|line| format!("{} × {}", line.quantity, line.sku))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Cancellation {
    /// The step of this kind (every cancellation has all five).
    pub fn step(&self, kind: StepKind) -> Option<&Step> {
        self.steps.iter().find(|step| step.kind == kind)
    }
}
