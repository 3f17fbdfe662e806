//! A state-machine property test: random interleavings of whole and partial cancels (B1), the worker's
//! step outcomes (successes, failures, exhausted retries, refusals), operator retries, undo (U1, U2),
//! refunds recorded by hand, the warehouse's status reports (F3) and the channel's own cancel (H3), on
//! a card-paid order with deducted stock that ships from a warehouse — checked after every step
//! against a reference model of PRODUCT.md's rules.

mod common;

use proptest::prelude::*;
use rescind_domain::cancel::{cancel_order, cancelled_at_channel};
use rescind_domain::ids::SequentialIds;
use rescind_domain::{
    pending_work, record_refund, record_step_outcome, retry_cancellation, undo_cancellation, Actor, CancelError,
    CancelOptions, CancellationStatus, ChannelKind, FinancialStatus, FulfillmentStatus, Money, NewLineItem, NewOrder,
    Order, OrderChange, OrderStatus, Payment, PaymentAction, PaymentMethod, PendingWork, RefundMethod, RefundRequest,
    StepKind, StepOutcome, Timestamp,
};
use rescind_domain::{warehouse_event, Outbound, OutboundStatus, WarehouseEvent, WarehouseSettings, Warning};
use std::collections::HashMap;

use common::yen;

fn yen_amount(amount: i64) -> Money {
    Money::from_minor_units(amount, yen())
}

fn at(step: u64) -> Timestamp {
    Timestamp::from_unix_micros(1_790_000_000_000_000 + step as i64 * 1_000_000)
}

/// Tea ×2 at ¥1,000 and cups ×3 at ¥500, ¥600 shipping: ¥4,100 paid by card, stock deducted; with
/// `warehouse`, it ships from one that has taken its outbound request.
fn start(warehouse: bool) -> Order {
    let line = |sku: &str, quantity, price| NewLineItem {
        channel_line_item_id: None,
        sku: sku.to_owned(),
        title: sku.to_owned(),
        quantity,
        price: yen_amount(price),
    };
    NewOrder {
        channel_id: "ch_1".to_owned(),
        channel_kind: ChannelKind::OwnStore,
        channel_order_id: None,
        number: None,
        currency: yen(),
        customer: common::customer(),
        shipping_address: common::address(),
        line_items: vec![line("TEA", 2, 1000), line("CUP", 3, 500)],
        total_shipping: yen_amount(600),
        total_tax: Money::ZERO,
        total_discount: Money::ZERO,
        payment: Some(Payment {
            method: PaymentMethod::CreditCard,
            amount: yen_amount(4100),
            provider_id: Some("pp_1".to_owned()),
            reference: Some("pi_1".to_owned()),
            points_amount: Money::ZERO,
        }),
        financial_status: FinancialStatus::Paid,
        fulfillment_status: FulfillmentStatus::AwaitingShipment,
        deduct_inventory: true,
        warehouse_id: warehouse.then(|| "wh_1".to_owned()),
    }
    .into_order("shop_1", "#1001".to_owned(), &mut SequentialIds::default(), at(0))
    .map(|mut order| {
        order.outbound = warehouse.then(|| Outbound {
            warehouse_id: "wh_1".to_owned(),
            external_id: Some("ship_1".to_owned()),
            status: OutboundStatus::Waiting,
            fee: None,
            attempts: 0,
            last_error: None,
        });
        order
    })
    .unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    /// `None`: the whole order; else `quantity` of line `line`.
    Cancel(Option<(usize, u32)>),
    /// The worker runs the pending step and the partner answers so.
    Work(Answer),
    Retry,
    Undo,
    /// An operator records a refund made outside rescind.
    RecordRefund(i64),
    /// The warehouse reports the outbound request so.
    Warehouse(OutboundStatus),
    /// The channel reports the order cancelled on its side.
    ChannelCancelled,
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Done,
    Failed { exhausted: bool },
    Refused,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => prop::option::of((0usize..2, 0u32..4)).prop_map(Op::Cancel),
        6 => prop_oneof![
            4 => Just(Answer::Done),
            2 => any::<bool>().prop_map(|exhausted| Answer::Failed { exhausted }),
            1 => Just(Answer::Refused),
        ]
        .prop_map(Op::Work),
        1 => Just(Op::Retry),
        1 => Just(Op::Undo),
        1 => (1i64..2000).prop_map(Op::RecordRefund),
        1 => prop::sample::select(vec![OutboundStatus::Picking, OutboundStatus::Picked, OutboundStatus::Packed, OutboundStatus::Shipped])
            .prop_map(Op::Warehouse),
        1 => Just(Op::ChannelCancelled),
    ]
}

/// What PRODUCT.md says the order must look like, kept beside it.
#[derive(Debug)]
struct Model {
    /// Cancelled quantity per line (B1).
    cancelled: Vec<u32>,
    /// Stock put back (restock steps) minus stock taken out again (undo), per SKU.
    returned: HashMap<String, i64>,
    /// Deducted at import, per SKU.
    deducted: HashMap<String, i64>,
}

fn processing(order: &Order) -> bool {
    order
        .cancellation
        .as_ref()
        .is_some_and(|c| c.status == CancellationStatus::Processing)
}

/// The worker's part: the pending step's outcome as the partner (or the store, for a restock) gives it.
fn outcome(order: &Order, answer: Answer, step: u64) -> Option<(StepKind, StepOutcome)> {
    let work = pending_work(order)?;
    let kind = work.step_kind()?;
    let outcome = match answer {
        Answer::Failed { exhausted } => StepOutcome::Failed {
            message: "503".to_owned(),
            retry_at: (!exhausted).then(|| at(step + 1)),
        },
        Answer::Refused => StepOutcome::Refused {
            message: "declined".to_owned(),
        },
        Answer::Done => match work {
            PendingWork::Payment(call) => match call.action {
                PaymentAction::Refund { amount } => StepOutcome::Refunded {
                    amount,
                    reference: format!("re_{step}"),
                },
                PaymentAction::Void => StepOutcome::Voided,
            },
            PendingWork::Channel(_) => StepOutcome::ChannelCancelled {
                message: "cancelled".to_owned(),
            },
            // The warehouse stops what it has not started on, and says too late for the rest (C5).
            PendingWork::Warehouse(_) => match order.outbound.as_ref().map(|outbound| outbound.status) {
                Some(
                    status @ (OutboundStatus::Picking
                    | OutboundStatus::Picked
                    | OutboundStatus::Packed
                    | OutboundStatus::Shipped),
                ) => StepOutcome::WarehouseTooLate {
                    status,
                    message: "too late".to_owned(),
                },
                _ => StepOutcome::OutboundStopped {
                    message: "stopped".to_owned(),
                },
            },
            PendingWork::NothingOwed => StepOutcome::NothingOwed,
            PendingWork::Restock => StepOutcome::Restocked {
                restocked: order.current_restock_quantities(),
                already: Vec::new(),
                missing: Vec::new(),
            },
            PendingWork::CreateOutbound(_) => return None,
        },
    };
    Some((kind, outcome))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_interleaving_of_cancels_steps_retries_undos_and_refunds_keeps_the_rules(
        warehouse in any::<bool>(),
        ops in prop::collection::vec(op(), 1..24),
    ) {
        let actor = Actor::Token("tok_1".to_owned());
        let mut ids = SequentialIds::default();
        let mut order = start(warehouse);
        // A whole cancellation accepted, whose lines count as cancelled once its gates (channel,
        // warehouse) have passed.
        let mut whole_pending = false;
        let mut model = Model {
            cancelled: vec![0; order.line_items.len()],
            returned: HashMap::new(),
            deducted: order.stock_snapshot.iter().map(|(sku, quantity)| (sku.clone(), i64::from(*quantity))).collect(),
        };
        for (step, op) in ops.into_iter().enumerate() {
            let step = step as u64 + 1;
            let before = order.clone();
            // Whether the warehouse still has the goods waiting: beyond that, a cancel may be refused
            // for reasons of its own (C4, C5), and only its consequences are checked.
            let waiting = order.fulfillment_status == FulfillmentStatus::AwaitingShipment
                && order.outbound.as_ref().is_none_or(|outbound| {
                    matches!(outbound.status, OutboundStatus::Requested | OutboundStatus::Waiting | OutboundStatus::Deleted)
                });
            let cancelled_here = order.status == OrderStatus::Cancelled || processing(&order);
            let changed: Option<OrderChange> = match op {
                Op::Cancel(lines) => {
                    let lines: Vec<(String, u32)> =
                        lines.map(|(line, quantity)| (order.line_items[line].id.clone(), quantity)).into_iter().collect();
                    let options = CancelOptions {
                        lines: lines.clone(),
                        refund_method: Some(RefundMethod::OriginalPayment),
                        warehouse: Some(WarehouseSettings::default()),
                        ..CancelOptions::default()
                    };
                    let result = cancel_order(order.clone(), &options, &actor, &mut ids, at(step)).map(|(_, change)| change);
                    let open = order.status == OrderStatus::Open && !processing(&order) && waiting;
                    match (&lines[..], &result) {
                        ([], Ok(_)) => prop_assert!(
                            order.status == OrderStatus::Open && !processing(&order),
                            "a whole cancel only of an open order with none processing"
                        ),
                        ([], Err(error)) => {
                            prop_assert!(!open, "C1: an open order the warehouse has not started is cancellable: {error}");
                            if order.status == OrderStatus::Cancelled {
                                prop_assert!(matches!(error, CancelError::AlreadyCancelled { .. }), "C7");
                            }
                        }
                        ([(line_id, quantity)], result) => {
                            let line = order.line_items.iter().position(|line| &line.id == line_id).unwrap();
                            let remaining = order.line_items[line].quantity - order.line_items[line].cancelled_quantity;
                            let valid = (1..=remaining).contains(quantity);
                            // Lines are cancelled only while no outbound request would still ship them.
                            let lines_cancellable = order.status == OrderStatus::Open
                                && !processing(&order)
                                && order.outbound.as_ref().is_none_or(|outbound| outbound.status == OutboundStatus::Deleted);
                            match result {
                                Ok(_) => prop_assert!(valid && lines_cancellable, "B1: accepted {quantity} of {remaining}"),
                                Err(error) => prop_assert!(!(valid && lines_cancellable), "B1: refused {quantity} of {remaining}: {error}"),
                            }
                            if result.is_ok() {
                                model.cancelled[line] += quantity;
                            }
                        }
                        _ => unreachable!("one line at most"),
                    }
                    if let Ok(change) = &result {
                        if lines.is_empty() || change.order.cancellation.as_ref().is_some_and(|c| !c.scope.is_partial()) {
                            // The whole order, or lines that left nothing.
                            whole_pending = true;
                        }
                    }
                    result.ok()
                }
                Op::Work(answer) => outcome(&order, answer, step).and_then(|(kind, outcome)| {
                    if let StepOutcome::Restocked { restocked, .. } = &outcome {
                        for (sku, quantity) in restocked {
                            *model.returned.entry(sku.clone()).or_default() += i64::from(*quantity);
                        }
                    }
                    record_step_outcome(order.clone(), kind, outcome, &mut ids, at(step)).ok()
                }),
                Op::Retry => retry_cancellation(&order, &actor, at(step)).ok(),
                Op::Undo => {
                    let undone = undo_cancellation(&order, None, &actor, at(step)).ok();
                    if undone.is_some() {
                        model.cancelled.iter_mut().for_each(|quantity| *quantity = 0);
                        whole_pending = false;
                    }
                    undone
                }
                Op::Warehouse(status) => {
                    let event = WarehouseEvent::StatusChanged { status, message: None };
                    let changed = warehouse_event(&order, &event, &mut ids, at(step)).ok();
                    if status.too_late() && cancelled_here && order.outbound.is_some() {
                        let warned = changed.as_ref().is_some_and(|change| change.order.warnings.contains(&Warning::ShippedAfterCancel));
                        prop_assert!(warned, "F3: goods leaving for an order cancelled here warn");
                    }
                    changed
                }
                Op::ChannelCancelled => {
                    let result = cancelled_at_channel(&order, None, "webhook", Some(WarehouseSettings::default()), &mut ids, at(step));
                    if order.status == OrderStatus::Cancelled || order.whole_cancellation_in_effect() {
                        prop_assert!(matches!(result, Err(CancelError::AlreadyCancelled { .. })), "H3: reported twice, cancelled once");
                    }
                    if result.is_ok() {
                        whole_pending = true;
                    }
                    result.ok()
                }
                Op::RecordRefund(amount) => {
                    let request = RefundRequest { amount: yen_amount(amount), method: RefundMethod::StoreCredit, note: None };
                    record_refund(&order, &request, &actor, &mut ids, at(step)).ok()
                }
            };
            match changed {
                None => prop_assert_eq!(&order, &before, "a refusal changes nothing"),
                Some(change) => {
                    prop_assert!(!change.history.is_empty(), "every state change is in the history");
                    for stock_move in &change.stock_moves {
                        *model.returned.entry(stock_move.sku.clone()).or_default() += stock_move.delta;
                    }
                    order = change.order;
                }
            }

            // A whole cancellation past its gates (the order is cancelled) cancels every line; one
            // that failed at a gate, none.
            if whole_pending && order.status == OrderStatus::Cancelled {
                whole_pending = false;
                for (index, line) in order.line_items.iter().enumerate() {
                    model.cancelled[index] = line.quantity;
                }
            } else if whole_pending && order.cancellation.as_ref().is_some_and(|c| c.status == CancellationStatus::Failed) {
                whole_pending = false;
            }
            // Money (R1–R3): the ledger is the refunded total, never beyond what was paid.
            let ledger: Money = order.refunds.iter().map(|refund| refund.amount).sum();
            prop_assert_eq!(ledger, order.total_refund_price);
            prop_assert!(order.total_refund_price <= order.total_paid, "refunded more than was paid");
            // Lines (B1): exactly the accepted quantities, never more than ordered.
            for (index, line) in order.line_items.iter().enumerate() {
                prop_assert!(line.cancelled_quantity <= line.quantity);
                prop_assert_eq!(line.cancelled_quantity, model.cancelled[index], "line {}", index);
            }
            if order.status == OrderStatus::Cancelled {
                prop_assert!(order.line_items.iter().all(|line| line.cancelled_quantity == line.quantity));
            }
            // Stock (I2, I3, U2): what went back and what is still held add up to the deduction, and
            // nothing is put back beyond what was deducted or cancelled.
            // A whole order's restock marks it `restocked`; a partial one takes its lines out of the snapshot.
            let snapshot: HashMap<&str, i64> = order
                .stock_snapshot
                .iter()
                .map(|(sku, quantity)| (sku.as_str(), if order.restocked { 0 } else { i64::from(*quantity) }))
                .collect();
            for (sku, deducted) in &model.deducted {
                let returned = model.returned.get(sku).copied().unwrap_or(0);
                let held = snapshot.get(sku.as_str()).copied().unwrap_or(0);
                prop_assert!((0..=*deducted).contains(&returned), "{sku}: returned {returned} of {deducted}");
                prop_assert_eq!(returned + held, *deducted, "{}: returned and held add up to the deduction", sku);
                let cancelled: u32 = order.line_items.iter().filter(|line| &line.sku == sku).map(|line| line.cancelled_quantity).sum();
                prop_assert!(returned <= i64::from(cancelled), "{sku}: returned {returned}, cancelled only {cancelled}");
            }
        }
    }
}
