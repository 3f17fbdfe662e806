//! The order and its four facets (PRODUCT.md §1), and how an imported order is built.

use crate::cancel::{CancelScope, Cancellation};
use crate::channel::ChannelKind;
use crate::history::HistoryEntry;
use crate::ids::IdSource;
use crate::money::{Currency, Money};
use crate::refund::Refund;
use crate::time::Timestamp;
use crate::warehouse::{Outbound, OutboundStatus};

crate::named_enum! {
    /// The order's life: open until cancelled or closed.
    pub enum OrderStatus {
        Open => "open",
        Cancelled => "cancelled",
        Closed => "closed",
    }
}

crate::named_enum! {
    /// Where the money stands.
    pub enum FinancialStatus {
        Pending => "pending",
        Authorized => "authorized",
        Paid => "paid",
        PartiallyRefunded => "partially_refunded",
        Refunded => "refunded",
        Voided => "voided",
    }
}

crate::named_enum! {
    /// The shipment status (C1, C2, C4, C5 decide by it).
    pub enum FulfillmentStatus {
        AwaitingPayment => "awaiting_payment",
        AwaitingAllocation => "awaiting_allocation",
        AwaitingConfirmation => "awaiting_confirmation",
        AwaitingShipment => "awaiting_shipment",
        /// The warehouse is picking.
        InProgress => "in_progress",
        Packed => "packed",
        Shipped => "shipped",
        Delivered => "delivered",
        Cancelled => "cancelled",
    }
}

impl FulfillmentStatus {
    /// The goods have left (or reached the customer): only a return can undo the sale (C2).
    pub const fn has_shipped(self) -> bool {
        match self {
            FulfillmentStatus::Shipped | FulfillmentStatus::Delivered => true,
            FulfillmentStatus::AwaitingPayment
            | FulfillmentStatus::AwaitingAllocation
            | FulfillmentStatus::AwaitingConfirmation
            | FulfillmentStatus::AwaitingShipment
            | FulfillmentStatus::InProgress
            | FulfillmentStatus::Packed
            | FulfillmentStatus::Cancelled => false,
        }
    }
}

crate::named_enum! {
    /// How the customer paid.
    pub enum PaymentMethod {
        CreditCard => "credit_card",
        BankTransfer => "bank_transfer",
        Cod => "cod",
        Points => "points",
        StoreCredit => "store_credit",
        /// The marketplace collected the money (Rakuten Pay, Amazon, Yahoo!).
        Channel => "channel",
    }
}

crate::named_enum! {
    /// A condition on the order an operator must see.
    pub enum Warning {
        /// W9: money went back but the order is neither cancelled nor shipped, so it will still ship.
        RefundedButWillShip => "refunded_but_will_ship",
        /// The warehouse shipped an order rescind had cancelled (F3 race).
        ShippedAfterCancel => "shipped_after_cancel",
        /// C4: a cancellation request is with the warehouse, which has not answered yet.
        CancelRequestedMayShip => "cancel_requested_may_ship",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub name: String,
    pub postcode: String,
    /// Japanese addresses name a prefecture…
    pub prefecture: Option<String>,
    /// …others a province or state.
    pub province: Option<String>,
    pub address1: String,
    pub address2: Option<String>,
    pub phone: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineItem {
    pub id: String,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    /// How many of `quantity` have been cancelled (all of them after a full cancel).
    pub cancelled_quantity: u32,
    /// The channel's own id of the line (Amazon's AmazonOrderItemCode), for item-level cancels.
    pub channel_line_item_id: Option<String>,
    /// Unit price.
    pub price: Money,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub method: PaymentMethod,
    /// Paid (or authorized) through `method`.
    pub amount: Money,
    /// The payment provider integration that holds the money, when there is one.
    pub provider_id: Option<String>,
    /// The provider's reference, e.g. a Stripe PaymentIntent `pi_…`.
    pub reference: Option<String>,
    /// Part of the total paid with the shop's points, on top of `amount`.
    pub points_amount: Money,
}

/// An order as rescind keeps it: the aggregate every decision reads and every change rewrites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub shop_id: String,
    pub number: String,
    pub channel_id: String,
    pub channel_kind: ChannelKind,
    pub channel_order_id: Option<String>,
    pub status: OrderStatus,
    pub financial_status: FinancialStatus,
    pub fulfillment_status: FulfillmentStatus,
    pub currency: Currency,
    pub sub_total: Money,
    pub total_shipping: Money,
    pub total_tax: Money,
    pub total_discount: Money,
    pub total_price: Money,
    /// What the customer actually paid (captured money plus points); what refunds may add up to.
    pub total_paid: Money,
    pub total_refund_price: Money,
    pub cancel_reason: Option<String>,
    pub canceled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub customer: Customer,
    pub shipping_address: Address,
    pub line_items: Vec<LineItem>,
    pub payment: Option<Payment>,
    /// Stock was deducted at import (I1).
    pub inventory_deducted: bool,
    /// What was deducted: SKUs and quantities as imported (I1), what a restock puts back (I3).
    pub stock_snapshot: Vec<(String, u32)>,
    /// The stock of the current cancellation went back (I2: never twice); an undo takes it out again.
    pub restocked: bool,
    pub warehouse_id: Option<String>,
    /// The outbound request at the warehouse, once the order is ready to ship (F1).
    pub outbound: Option<Outbound>,
    pub warnings: Vec<Warning>,
    /// Every refund recorded for this order, oldest first.
    pub refunds: Vec<Refund>,
    /// The order's current (latest) cancellation.
    pub cancellation: Option<Cancellation>,
    /// The customer's latest cancellation request (§4).
    pub cancellation_request: Option<crate::request::CancellationRequest>,
}

impl Order {
    /// What is still owed to the customer: paid minus refunded.
    pub fn refundable(&self) -> Money {
        self.total_paid.saturating_sub(self.total_refund_price)
    }

    /// What the current cancellation still owes the customer: everything refundable for a whole-order
    /// cancellation; for a partial one (B1), its lines' amount minus the refunds recorded against it.
    pub fn owed_for_cancellation(&self) -> Money {
        match &self.cancellation {
            Some(Cancellation {
                id,
                scope: CancelScope::Lines { refund_amount, .. },
                ..
            }) => {
                let refunded: Money = self
                    .refunds
                    .iter()
                    .filter(|refund| refund.cancellation_id.as_deref() == Some(id.as_str()))
                    .map(|refund| refund.amount)
                    .sum();
                refund_amount.saturating_sub(refunded).min(self.refundable())
            }
            Some(Cancellation {
                scope: CancelScope::Order { .. },
                ..
            })
            | None => self.refundable(),
        }
    }

    /// The order as a whole is cancelled or being cancelled (C7); a partial cancellation leaves it open.
    pub fn whole_cancellation_in_effect(&self) -> bool {
        self.cancellation
            .as_ref()
            .is_some_and(|c| c.status.is_in_effect() && !c.scope.is_partial())
    }

    /// What the current cancellation puts back in stock.
    pub fn current_restock_quantities(&self) -> Vec<(String, u32)> {
        match &self.cancellation {
            Some(cancellation) => self.restock_quantities(&cancellation.scope),
            None => Vec::new(),
        }
    }

    /// What a cancellation of `scope` puts back in stock: for the whole order, what the deduction
    /// snapshot still holds (I3); for some lines, their quantities as the snapshot holds them (B1).
    pub fn restock_quantities(&self, scope: &CancelScope) -> Vec<(String, u32)> {
        match scope {
            CancelScope::Order { .. } => self
                .stock_snapshot
                .iter()
                .filter(|(_, quantity)| *quantity > 0)
                .cloned()
                .collect(),
            CancelScope::Lines { restock, .. } => restock.clone(),
        }
    }

    /// The financial status that the recorded refunds imply.
    pub(crate) fn financial_status_after_refunds(&self) -> FinancialStatus {
        if self.total_refund_price.is_zero() {
            self.financial_status
        } else if self.total_refund_price >= self.total_paid {
            FinancialStatus::Refunded
        } else {
            FinancialStatus::PartiallyRefunded
        }
    }

    pub(crate) fn add_warning(&mut self, warning: Warning) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }
}

/// SKUs and their total quantities over the lines, in the order the SKUs first appear.
fn snapshot(lines: &[LineItem]) -> Vec<(String, u32)> {
    let mut totals: Vec<(String, u32)> = Vec::new();
    for line in lines {
        match totals.iter_mut().find(|(sku, _)| *sku == line.sku) {
            Some((_, quantity)) => *quantity += line.quantity,
            None => totals.push((line.sku.clone(), line.quantity)),
        }
    }
    totals
}

/// A line of an order being imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLineItem {
    pub channel_line_item_id: Option<String>,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub price: Money,
}

/// A validated import request (API.md `POST /orders`). Constructing one is the edge's job; this type
/// only computes the totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub channel_id: String,
    pub channel_kind: ChannelKind,
    pub channel_order_id: Option<String>,
    pub number: Option<String>,
    pub currency: Currency,
    pub customer: Customer,
    pub shipping_address: Address,
    pub line_items: Vec<NewLineItem>,
    pub total_shipping: Money,
    pub total_tax: Money,
    pub total_discount: Money,
    pub payment: Option<Payment>,
    pub financial_status: FinancialStatus,
    pub fulfillment_status: FulfillmentStatus,
    pub deduct_inventory: bool,
    pub warehouse_id: Option<String>,
}

/// Why an import is refused; each entry is one problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportProblems(pub Vec<String>);

impl NewOrder {
    /// Sum of the lines, `price × quantity`.
    pub fn sub_total(&self) -> Option<Money> {
        self.line_items.iter().try_fold(Money::ZERO, |sum, line| {
            sum.checked_add(line.price.checked_mul(line.quantity)?)
        })
    }

    /// Checks the amounts agree with each other: the discount fits within the order and the payment
    /// does not exceed the total. Field-level checks (formats, required fields) happen at the edge.
    pub fn check_amounts(&self) -> Result<Money, ImportProblems> {
        let mut problems = Vec::new();
        let sub_total = self.sub_total();
        let gross = sub_total
            .and_then(|sub| sub.checked_add(self.total_shipping))
            .and_then(|sum| sum.checked_add(self.total_tax));
        let Some(gross) = gross else {
            return Err(ImportProblems(vec![
                "line_items: the order total is too large".to_owned()
            ]));
        };
        let total_price = match gross.checked_sub(self.total_discount) {
            Some(total) => total,
            None => {
                problems
                    .push("total_discount: is larger than the order's sub_total, shipping and tax together".to_owned());
                Money::ZERO
            }
        };
        if let Some(payment) = &self.payment {
            let paid = payment
                .amount
                .checked_add(payment.points_amount)
                .unwrap_or(payment.amount);
            if problems.is_empty() && paid > total_price {
                problems.push(format!(
                    "payment.amount: {} plus points {} exceeds the order total {}",
                    payment.amount.format(self.currency),
                    payment.points_amount.format(self.currency),
                    total_price.format(self.currency)
                ));
            }
        }
        if self.financial_status == FinancialStatus::Paid && self.payment.is_none() && !total_price.is_zero() {
            problems.push("payment: is required for an order imported as paid".to_owned());
        }
        if problems.is_empty() {
            Ok(total_price)
        } else {
            Err(ImportProblems(problems))
        }
    }

    /// Builds the stored order. `shop_id` and `number` come from the store (the number from the shop's
    /// counter when the request has none).
    pub fn into_order(
        self,
        shop_id: &str,
        number: String,
        ids: &mut dyn IdSource,
        now: Timestamp,
    ) -> Result<Order, ImportProblems> {
        let total_price = self.check_amounts()?;
        let sub_total = self.sub_total().unwrap_or(Money::ZERO);
        let total_paid = match (self.financial_status, &self.payment) {
            (FinancialStatus::Paid, Some(payment)) => payment
                .amount
                .checked_add(payment.points_amount)
                .unwrap_or(payment.amount),
            _ => Money::ZERO,
        };
        let line_items: Vec<LineItem> = self
            .line_items
            .into_iter()
            .map(|line| LineItem {
                id: ids.new_id("li"),
                sku: line.sku,
                title: line.title,
                quantity: line.quantity,
                cancelled_quantity: 0,
                channel_line_item_id: line.channel_line_item_id,
                price: line.price,
            })
            .collect();
        let stock_snapshot = if self.deduct_inventory {
            snapshot(&line_items)
        } else {
            Vec::new()
        };
        Ok(Order {
            id: ids.new_id("ord"),
            shop_id: shop_id.to_owned(),
            number,
            channel_id: self.channel_id,
            channel_kind: self.channel_kind,
            channel_order_id: self.channel_order_id,
            status: OrderStatus::Open,
            financial_status: self.financial_status,
            fulfillment_status: self.fulfillment_status,
            currency: self.currency,
            sub_total,
            total_shipping: self.total_shipping,
            total_tax: self.total_tax,
            total_discount: self.total_discount,
            total_price,
            total_paid,
            total_refund_price: Money::ZERO,
            cancel_reason: None,
            canceled_at: None,
            created_at: now,
            updated_at: now,
            customer: self.customer,
            shipping_address: self.shipping_address,
            line_items,
            payment: self.payment,
            inventory_deducted: self.deduct_inventory,
            stock_snapshot,
            restocked: false,
            outbound: self
                .warehouse_id
                .as_ref()
                .filter(|_| self.fulfillment_status == FulfillmentStatus::AwaitingShipment)
                .map(|warehouse_id| Outbound {
                    warehouse_id: warehouse_id.clone(),
                    external_id: None,
                    status: OutboundStatus::Requested,
                    fee: None,
                    attempts: 0,
                    last_error: None,
                }),
            warehouse_id: self.warehouse_id,
            warnings: Vec::new(),
            refunds: Vec::new(),
            cancellation: None,
            cancellation_request: None,
        })
    }
}

/// The outcome of a decision on one order: its new state and what to add to its history and ledgers.
/// The store writes all of it in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderChange {
    pub order: Order,
    pub history: Vec<HistoryEntry>,
    /// Refunds created by this change (already included in `order.refunds`).
    pub new_refunds: Vec<Refund>,
    /// What the workflow worker has to do for the order's cancellation next.
    pub workflow: WorkflowSchedule,
    /// Calls made to outside systems for this order, for the sync history (F5).
    pub sync: Vec<SyncRecord>,
    /// Stock the store moves with the change (U2).
    pub stock_moves: Vec<crate::inventory::StockMove>,
}

crate::named_enum! {
    /// What a sync history entry is about (API.md `GET /sync_history`).
    pub enum SyncKind {
        Cancel => "cancel",
        Modify => "modify",
        Restock => "restock",
        InventoryPush => "inventory_push",
    }
}

/// One call to an outside system, kept in the sync history (F5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRecord {
    pub at: Timestamp,
    pub kind: SyncKind,
    /// The system called, e.g. `rakuten ch_01…`.
    pub target: String,
    /// What was asked, for people.
    pub request: String,
    pub ok: bool,
    /// What the system answered.
    pub message: String,
    /// A fee the system charges for it (a warehouse's cancel request).
    pub fee: Option<Money>,
}

impl OrderChange {
    /// A change that leaves the workflow as it is.
    pub fn new(order: Order, history: Vec<HistoryEntry>, new_refunds: Vec<Refund>) -> Self {
        OrderChange {
            order,
            history,
            new_refunds,
            workflow: WorkflowSchedule::Unchanged,
            sync: Vec::new(),
            stock_moves: Vec::new(),
        }
    }

    /// This change followed by `later`, a change made on the order this one left: one change that
    /// leaves the order and its workflow as `later` does, with the history, refunds, sync records and
    /// stock moves of both, this one's first.
    pub fn then(mut self, later: OrderChange) -> OrderChange {
        self.history.extend(later.history);
        self.new_refunds.extend(later.new_refunds);
        self.sync.extend(later.sync);
        self.stock_moves.extend(later.stock_moves);
        OrderChange {
            order: later.order,
            workflow: match later.workflow {
                WorkflowSchedule::Unchanged => self.workflow,
                scheduled @ (WorkflowSchedule::DueAt(_) | WorkflowSchedule::Finished) => scheduled,
            },
            ..self
        }
    }
}

/// When the worker should next carry the order's cancellation forward (W7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowSchedule {
    /// Nothing to schedule or unschedule.
    Unchanged,
    /// A step is pending: run it at this time (now, or after a backoff).
    DueAt(Timestamp),
    /// No step is left to run by the worker (done, or waiting on an operator).
    Finished,
}
