//! The cancel and refund decisions, without a database or a socket.

mod common;

use proptest::prelude::*;
use rescind_domain::cancel::cancel_order;
use rescind_domain::ids::SequentialIds;
use rescind_domain::order::WorkflowSchedule;
use rescind_domain::{
    pending_work, plan_undo, record_step_outcome, record_step_outcomes, retry_cancellation, undo_cancellation,
    PaymentAction, PendingWork, RetryError, StaleStep, StepOutcome, UndoError,
};
use rescind_domain::{
    plan_cancellation, record_refund, Actor, CancelError, CancelOptions, CancellationStatus, ChannelKind,
    FinancialStatus, FulfillmentStatus, Money, NewLineItem, NewOrder, Order, OrderStatus, Payment, PaymentMethod,
    RefundError, RefundMethod, RefundRequest, StepKind, StepStatus, Timestamp,
};

use common::yen;

fn money(text: &str) -> Money {
    Money::parse(text, yen()).unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_unix_micros(1_790_000_000_000_000)
}

fn order(fulfillment_status: FulfillmentStatus, payment: Option<Payment>, financial_status: FinancialStatus) -> Order {
    NewOrder {
        channel_id: "ch_1".to_owned(),
        channel_kind: ChannelKind::OwnStore,
        channel_order_id: None,
        number: None,
        currency: yen(),
        customer: common::customer(),
        shipping_address: common::address(),
        line_items: vec![NewLineItem {
            channel_line_item_id: None,
            sku: "TEA".to_owned(),
            title: "Sencha".to_owned(),
            quantity: 2,
            price: money("1000"),
        }],
        total_shipping: money("600"),
        total_tax: Money::ZERO,
        total_discount: Money::ZERO,
        payment,
        financial_status,
        fulfillment_status,
        deduct_inventory: false,
        warehouse_id: None,
    }
    .into_order("shop_1", "#1001".to_owned(), &mut SequentialIds::default(), now())
    .unwrap()
}

fn paid(method: PaymentMethod) -> Order {
    order(
        FulfillmentStatus::AwaitingShipment,
        Some(Payment {
            method,
            amount: money("2600"),
            provider_id: None,
            reference: None,
            points_amount: Money::ZERO,
        }),
        FinancialStatus::Paid,
    )
}

fn options(method: Option<RefundMethod>) -> CancelOptions {
    CancelOptions {
        refund_method: method,
        ..CancelOptions::default()
    }
}

fn merchant() -> Actor {
    Actor::Token("tok_1".to_owned())
}

#[test]
fn a_step_s_history_lines_are_named_step_and_the_step_s_name() {
    for kind in StepKind::ALL {
        assert_eq!(kind.history_kind(), format!("step.{}", kind.as_str()));
    }
}

#[test]
fn only_orders_not_yet_in_the_warehouses_hands_may_be_cancelled() {
    for status in FulfillmentStatus::ALL {
        let mut order = paid(PaymentMethod::BankTransfer);
        order.fulfillment_status = *status;
        let decision = plan_cancellation(&order, &options(Some(RefundMethod::StoreCredit)));
        match status {
            FulfillmentStatus::AwaitingPayment
            | FulfillmentStatus::AwaitingAllocation
            | FulfillmentStatus::AwaitingConfirmation
            | FulfillmentStatus::AwaitingShipment => {
                assert!(decision.is_ok(), "C1 allows {status}")
            }
            FulfillmentStatus::InProgress | FulfillmentStatus::Packed => {
                assert!(matches!(decision, Err(CancelError::NotCancellable { .. })), "{status}")
            }
            FulfillmentStatus::Shipped | FulfillmentStatus::Delivered => {
                assert!(
                    matches!(decision, Err(CancelError::ReturnRequired { .. })),
                    "C2 for {status}"
                )
            }
            FulfillmentStatus::Cancelled => assert!(matches!(decision, Err(CancelError::AlreadyCancelled { .. }))),
        }
    }
}

#[test]
fn the_packed_refusal_tells_the_operator_the_goods_will_ship() {
    let mut order = paid(PaymentMethod::BankTransfer);
    order.fulfillment_status = FulfillmentStatus::Packed;
    let message = plan_cancellation(&order, &options(None)).unwrap_err().to_string();
    assert!(
        message.contains("will ship") && message.contains("refuse delivery"),
        "{message}"
    );
}

#[test]
fn a_marketplace_order_is_cancelled_at_the_channel_first() {
    let mut order = paid(PaymentMethod::Channel);
    order.channel_kind = ChannelKind::Rakuten;
    order.channel_order_id = Some("354396-20260525-0036329794".to_owned());
    assert!(
        matches!(
            plan_cancellation(&order, &options(None)),
            Err(CancelError::InvalidReason { .. })
        ),
        "H2: a reason code is needed"
    );
    let with_reason = CancelOptions {
        reason_code: Some("8".to_owned()),
        ..options(None)
    };
    let (_, change) = cancel_order(
        order.clone(),
        &with_reason,
        &merchant(),
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    assert_eq!(
        change.order.status,
        OrderStatus::Open,
        "C3: open until the channel confirms"
    );
    assert_eq!(
        change.order.cancellation.as_ref().unwrap().status,
        CancellationStatus::Processing
    );
    assert!(change.new_refunds.is_empty());
    let Some(PendingWork::Channel(call)) = pending_work(&change.order) else {
        panic!("the channel is called first")
    };
    assert_eq!(call.reason_code.as_deref(), Some("8"));
    assert!(call.refund_at_channel, "the channel collected the money and refunds it");

    let confirmed = record_step_outcome(
        change.order.clone(),
        StepKind::ChannelCancel,
        StepOutcome::ChannelCancelled {
            message: "INFO_101".to_owned(),
        },
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    assert_eq!(confirmed.order.status, OrderStatus::Cancelled);
    assert_eq!(
        confirmed.order.cancellation.as_ref().unwrap().status,
        CancellationStatus::Completed
    );
    assert_eq!(
        confirmed.new_refunds[0].method,
        RefundMethod::Channel,
        "W6: recorded as refunded by the channel"
    );

    let refused = record_step_outcome(
        change.order.clone(),
        StepKind::ChannelCancel,
        StepOutcome::Refused {
            message: "ERROR_017".to_owned(),
        },
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    assert_eq!(
        refused.order.status,
        OrderStatus::Open,
        "a refusal leaves the order as it was"
    );
    assert_eq!(
        refused.order.cancellation.as_ref().unwrap().status,
        CancellationStatus::Failed
    );
    assert!(refused.new_refunds.is_empty());
}

#[test]
fn store_credit_refunds_at_once_and_completes_the_cancellation() {
    let order = paid(PaymentMethod::BankTransfer);
    let (plan, change) = cancel_order(
        order.clone(),
        &options(Some(RefundMethod::StoreCredit)),
        &merchant(),
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    assert_eq!(plan.refund_amount, money("2600"));
    assert_eq!(change.order.status, OrderStatus::Cancelled);
    assert_eq!(change.order.financial_status, FinancialStatus::Refunded);
    assert_eq!(change.order.total_refund_price, money("2600"));
    assert_eq!(change.new_refunds.len(), 1);
    let cancellation = change.order.cancellation.as_ref().unwrap();
    assert_eq!(cancellation.status, CancellationStatus::Completed);
    assert_eq!(
        cancellation.step(StepKind::Refund).unwrap().status,
        StepStatus::Succeeded
    );
}

#[test]
fn a_bank_transfer_refund_leaves_the_cancellation_awaiting_refund_until_it_is_recorded() {
    let order = paid(PaymentMethod::BankTransfer);
    let mut ids = SequentialIds::default();
    let (_, change) = cancel_order(order.clone(), &options(None), &merchant(), &mut ids, now()).unwrap();
    let cancelled = change.order;
    assert_eq!(cancelled.status, OrderStatus::Cancelled, "W4: it will not ship");
    assert_eq!(
        cancelled.cancellation.as_ref().unwrap().status,
        CancellationStatus::AwaitingRefund
    );

    let refund = RefundRequest {
        amount: money("2600"),
        method: RefundMethod::BankTransfer,
        note: None,
    };
    let change = record_refund(&cancelled, &refund, &merchant(), &mut ids, now()).unwrap();
    assert_eq!(
        change.order.cancellation.as_ref().unwrap().status,
        CancellationStatus::Completed
    );
    assert!(change.order.warnings.is_empty());
}

#[test]
fn refunds_to_the_original_payment_wait_for_the_payment_provider() {
    let order = paid(PaymentMethod::CreditCard);
    assert!(matches!(
        plan_cancellation(&order, &options(None)),
        Err(CancelError::PaymentProviderRequired { .. })
    ));
    let refund = RefundRequest {
        amount: money("1"),
        method: RefundMethod::OriginalPayment,
        note: None,
    };
    assert_eq!(
        record_refund(&order, &refund, &merchant(), &mut SequentialIds::default(), now()).unwrap_err(),
        RefundError::PaymentProviderRequired
    );
}

#[test]
fn an_unpaid_order_is_voided_and_completes_at_once() {
    let order = order(FulfillmentStatus::AwaitingPayment, None, FinancialStatus::Pending);
    let (plan, change) = cancel_order(
        order.clone(),
        &options(None),
        &merchant(),
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    assert_eq!(plan.refund_amount, Money::ZERO);
    assert_eq!(change.order.financial_status, FinancialStatus::Voided);
    assert_eq!(change.order.cancellation.unwrap().status, CancellationStatus::Completed);
}

#[test]
fn a_dry_run_plan_is_what_the_cancel_then_does() {
    let order = paid(PaymentMethod::Points);
    let planned = plan_cancellation(&order, &options(None)).unwrap();
    let (plan, change) = cancel_order(
        order.clone(),
        &options(None),
        &merchant(),
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    assert_eq!(planned, plan);
    let steps: Vec<_> = change
        .order
        .cancellation
        .unwrap()
        .steps
        .iter()
        .map(|step| (step.kind, step.status, step.message.clone()))
        .collect();
    let planned_steps: Vec<_> = planned
        .steps
        .iter()
        .map(|step| (step.kind, step.status, step.action.clone()))
        .collect();
    assert_eq!(steps, planned_steps);
}

#[derive(Clone, Debug)]
enum Event {
    Cancel { refund: bool, method: Option<RefundMethod> },
    Refund { amount_yen: u32, method: RefundMethod },
}

fn event() -> impl Strategy<Value = Event> {
    let method = prop::sample::select(RefundMethod::ALL.to_vec());
    prop_oneof![
        (any::<bool>(), prop::option::of(method.clone())).prop_map(|(refund, method)| Event::Cancel { refund, method }),
        (1u32..4000, method).prop_map(|(amount_yen, method)| Event::Refund { amount_yen, method }),
    ]
}

fn starting_order() -> impl Strategy<Value = Order> {
    (
        prop::sample::select(FulfillmentStatus::ALL.to_vec()),
        prop::sample::select(PaymentMethod::ALL.to_vec()),
        0u32..=2600,
        prop::sample::select(vec![
            FinancialStatus::Pending,
            FinancialStatus::Authorized,
            FinancialStatus::Paid,
        ]),
    )
        .prop_map(|(fulfillment_status, method, points, financial_status)| {
            let payment = Payment {
                method,
                amount: Money::from_minor_units(i64::from(2600 - points), yen()),
                provider_id: None,
                reference: None,
                points_amount: Money::from_minor_units(i64::from(points), yen()),
            };
            order(fulfillment_status, Some(payment), financial_status)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// No sequence of cancels and refunds refunds more than was paid, completes a cancellation that
    /// is not fully refunded, or cancels twice.
    #[test]
    fn no_sequence_of_cancels_and_refunds_breaks_the_money_rules(start in starting_order(), events in prop::collection::vec(event(), 1..12)) {
        let mut ids = SequentialIds::default();
        let mut order = start;
        let mut cancellations = 0;
        for event in events {
            let before = order.clone();
            let outcome = match event {
                Event::Cancel { refund, method } => {
                    let options = CancelOptions { refund, refund_method: method, ..CancelOptions::default() };
                    let result = cancel_order(order.clone(), &options, &merchant(), &mut ids, now()).map(|(_, change)| change);
                    if result.is_ok() {
                        cancellations += 1;
                    }
                    if before.status == OrderStatus::Cancelled {
                        prop_assert!(matches!(result, Err(CancelError::AlreadyCancelled { .. })), "C7");
                    }
                    result.map_err(|error| error.to_string())
                }
                Event::Refund { amount_yen, method } => {
                    let request = RefundRequest { amount: Money::from_minor_units(i64::from(amount_yen), yen()), method, note: None };
                    record_refund(&order, &request, &merchant(), &mut ids, now()).map_err(|error| error.to_string())
                }
            };
            match outcome {
                Ok(change) => order = change.order,
                Err(_) => prop_assert_eq!(&order, &before, "a refusal changes nothing"),
            }
            let ledger: Money = order.refunds.iter().map(|refund| refund.amount).sum();
            prop_assert_eq!(ledger, order.total_refund_price);
            prop_assert!(order.total_refund_price <= order.total_paid, "refunded more than paid");
            if order.cancellation.as_ref().is_some_and(|c| c.status == CancellationStatus::Completed) {
                prop_assert_eq!(order.total_refund_price, order.total_paid, "completed means fully refunded");
            }
            prop_assert!(cancellations <= 1, "one cancellation per order");
        }
    }
}

fn card_paid() -> Order {
    order(
        FulfillmentStatus::AwaitingShipment,
        Some(Payment {
            method: PaymentMethod::CreditCard,
            amount: money("2600"),
            provider_id: Some("pp_1".to_owned()),
            reference: Some("pi_1".to_owned()),
            points_amount: Money::ZERO,
        }),
        FinancialStatus::Paid,
    )
}

fn cancelled_by_card() -> Order {
    cancel_order(
        card_paid(),
        &options(None),
        &merchant(),
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap()
    .1
    .order
}

#[test]
fn a_card_refund_is_left_pending_for_the_worker_with_a_key_derived_from_the_step() {
    let order = cancelled_by_card();
    let cancellation = order.cancellation.as_ref().unwrap();
    assert_eq!(cancellation.status, CancellationStatus::Processing);
    assert_eq!(
        order.status,
        OrderStatus::Cancelled,
        "W4: it will not ship, whatever the refund does"
    );
    let Some(PendingWork::Payment(call)) = pending_work(&order) else {
        panic!("a payment call is pending")
    };
    assert_eq!(call.action, PaymentAction::Refund { amount: money("2600") });
    assert_eq!(call.idempotency_key, format!("rescind-{}-refund-0", cancellation.id));
    assert!(!call.earlier_attempts);
}

#[test]
fn a_refund_outcome_recorded_twice_refunds_once() {
    let order = cancelled_by_card();
    let outcome = StepOutcome::Refunded {
        amount: money("2600"),
        reference: "re_1".to_owned(),
    };
    let mut ids = SequentialIds::default();
    let first = record_step_outcome(order.clone(), StepKind::Refund, outcome.clone(), &mut ids, now()).unwrap();
    assert_eq!(
        first.order.cancellation.as_ref().unwrap().status,
        CancellationStatus::Completed
    );
    assert_eq!(first.order.total_refund_price, money("2600"));
    assert_eq!(first.workflow, WorkflowSchedule::Finished);
    assert_eq!(
        record_step_outcome(first.order.clone(), StepKind::Refund, outcome, &mut ids, now()),
        Err(StaleStep)
    );
}

/// A card-paid marketplace order cancelled: the channel's step first, then the refund (W2).
fn cancelled_at_a_marketplace_by_card() -> Order {
    let mut order = card_paid();
    order.channel_kind = ChannelKind::Rakuten;
    order.channel_order_id = Some("354396-20260525-0036329794".to_owned());
    let with_reason = CancelOptions {
        reason_code: Some("8".to_owned()),
        ..options(None)
    };
    cancel_order(
        order.clone(),
        &with_reason,
        &merchant(),
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap()
    .1
    .order
}

#[test]
fn the_channel_s_outcome_and_the_refund_s_written_together_read_as_each_recorded_in_turn() {
    let order = cancelled_at_a_marketplace_by_card();
    let channel_at = Timestamp::from_unix_micros(now().unix_micros() + 1_000);
    let refund_at = Timestamp::from_unix_micros(now().unix_micros() + 2_000);
    let cancelled = StepOutcome::ChannelCancelled {
        message: "INFO_101".to_owned(),
    };
    let refunded = StepOutcome::Refunded {
        amount: money("2600"),
        reference: "re_1".to_owned(),
    };

    let mut ids = SequentialIds::default();
    let first = record_step_outcome(
        order.clone(),
        StepKind::ChannelCancel,
        cancelled.clone(),
        &mut ids,
        channel_at,
    )
    .unwrap();
    assert!(
        matches!(pending_work(&first.order), Some(PendingWork::Payment(_))),
        "the refund is due once the channel has cancelled"
    );
    let second = record_step_outcome(
        first.order.clone(),
        StepKind::Refund,
        refunded.clone(),
        &mut ids,
        refund_at,
    )
    .unwrap();

    let together = record_step_outcomes(
        order.clone(),
        vec![
            (StepKind::ChannelCancel, cancelled.clone(), channel_at),
            (StepKind::Refund, refunded.clone(), refund_at),
        ],
        &mut SequentialIds::default(),
    )
    .unwrap();
    assert_eq!(
        together.order, second.order,
        "the order as the two outcomes in turn leave it"
    );
    assert_eq!(together.order.status, OrderStatus::Cancelled);
    assert_eq!(
        together.order.cancellation.as_ref().unwrap().status,
        CancellationStatus::Completed
    );
    let lines: Vec<_> = first.history.iter().chain(&second.history).cloned().collect();
    assert_eq!(
        together.history, lines,
        "W2: every step's line, in order, at the time its outcome came"
    );
    assert!(together.history.iter().any(|line| line.at == channel_at));
    assert_eq!(together.new_refunds, second.new_refunds);
    assert_eq!(together.workflow, second.workflow);
    assert_eq!(together.sync.len(), first.sync.len() + second.sync.len());

    // Undone between the calls and the write: nothing of the run is recorded.
    assert_eq!(
        record_step_outcomes(
            second.order.clone(),
            vec![(StepKind::ChannelCancel, cancelled.clone(), channel_at)],
            &mut SequentialIds::default()
        ),
        Err(StaleStep)
    );
    // An outcome stale after the first: the first is recorded alone, as it would have been.
    let refunded_by_hand = record_step_outcomes(
        order.clone(),
        vec![
            (StepKind::ChannelCancel, cancelled.clone(), channel_at),
            (StepKind::ChannelCancel, cancelled, refund_at),
        ],
        &mut SequentialIds::default(),
    )
    .unwrap();
    assert_eq!(refunded_by_hand.order, first.order);
    assert_eq!(refunded_by_hand.history, first.history);
    assert!(record_step_outcomes(order.clone(), Vec::new(), &mut SequentialIds::default()).is_err());
}

#[test]
fn after_a_card_refund_the_restock_runs_next_and_a_replayed_restock_changes_nothing() {
    let mut deducted = card_paid();
    deducted.inventory_deducted = true;
    deducted.stock_snapshot = vec![("TEA".to_owned(), 2)];
    let (_, cancelled) = cancel_order(
        deducted.clone(),
        &options(None),
        &merchant(),
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    let mut ids = SequentialIds::default();
    let refunded = record_step_outcome(
        cancelled.order.clone(),
        StepKind::Refund,
        StepOutcome::Refunded {
            amount: money("2600"),
            reference: "re_1".to_owned(),
        },
        &mut ids,
        now(),
    )
    .unwrap();
    assert_eq!(
        refunded.workflow,
        WorkflowSchedule::DueAt(now()),
        "the worker comes back for the restock"
    );
    assert_eq!(pending_work(&refunded.order), Some(PendingWork::Restock));
    assert_eq!(
        refunded.order.cancellation.as_ref().unwrap().status,
        CancellationStatus::Processing,
        "not completed while a step is pending"
    );
    let replayed = record_step_outcome(
        refunded.order.clone(),
        StepKind::Restock,
        StepOutcome::Restocked {
            restocked: Vec::new(),
            already: vec!["TEA".to_owned()],
            missing: Vec::new(),
        },
        &mut ids,
        now(),
    )
    .unwrap();
    let cancellation = replayed.order.cancellation.as_ref().unwrap();
    let restock = cancellation.step(StepKind::Restock).unwrap();
    assert_eq!(
        (restock.status, restock.message.as_str()),
        (StepStatus::Skipped, "skipped: already restocked (or in progress)"),
        "I4"
    );
    assert!(replayed.stock_moves.is_empty(), "no effect on stock");
    assert_eq!(cancellation.status, CancellationStatus::Completed);
    assert_eq!(replayed.workflow, WorkflowSchedule::Finished);
}

#[test]
fn failures_are_retried_until_the_attempts_run_out_then_an_operator_is_asked() {
    let mut order = cancelled_by_card();
    let retry_at = now().plus_seconds(1);
    let failed = StepOutcome::Failed {
        message: "503".to_owned(),
        retry_at: Some(retry_at),
    };
    let change = record_step_outcome(
        order.clone(),
        StepKind::Refund,
        failed,
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    assert_eq!(change.workflow, WorkflowSchedule::DueAt(retry_at));
    order = change.order;
    let Some(PendingWork::Payment(call)) = pending_work(&order) else {
        panic!("still pending")
    };
    assert!(call.earlier_attempts, "the next attempt looks the first one up");
    assert!(
        call.idempotency_key.ends_with("-refund-0"),
        "same key after an unknown outcome"
    );

    let exhausted = StepOutcome::Failed {
        message: "503".to_owned(),
        retry_at: None,
    };
    let change = record_step_outcome(
        order.clone(),
        StepKind::Refund,
        exhausted,
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    let cancellation = change.order.cancellation.as_ref().unwrap();
    assert!(cancellation.needs_attention);
    assert_eq!(cancellation.status, CancellationStatus::AwaitingRefund);
    assert_eq!(
        cancellation.step(StepKind::Refund).unwrap().generation,
        0,
        "the first call may have landed: keep its key"
    );

    let retried = retry_cancellation(&change.order, &merchant(), now()).unwrap();
    assert_eq!(
        retried.order.cancellation.as_ref().unwrap().status,
        CancellationStatus::Processing
    );
    assert_eq!(
        retry_cancellation(&retried.order, &merchant(), now()),
        Err(RetryError::NotNeedingAttention)
    );
}

#[test]
fn a_refusal_changes_the_key_of_the_next_attempt() {
    let order = cancelled_by_card();
    let refused = StepOutcome::Refused {
        message: "card_declined".to_owned(),
    };
    let change = record_step_outcome(
        order.clone(),
        StepKind::Refund,
        refused,
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    assert!(change.order.cancellation.as_ref().unwrap().needs_attention);
    assert_eq!(change.order.total_refund_price, Money::ZERO);
    let retried = retry_cancellation(&change.order, &merchant(), now()).unwrap();
    let Some(PendingWork::Payment(call)) = pending_work(&retried.order) else {
        panic!("pending again")
    };
    assert!(call.idempotency_key.ends_with("-refund-1"));
}

#[test]
fn a_marketplace_cancellation_cannot_be_undone() {
    let mut order = paid(PaymentMethod::BankTransfer);
    let (_, change) = cancel_order(
        order.clone(),
        &options(Some(RefundMethod::StoreCredit)),
        &merchant(),
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap();
    order = change.order;
    order.channel_kind = ChannelKind::Rakuten;
    assert!(matches!(plan_undo(&order), Err(UndoError::Irreversible { .. })), "C6");
    assert!(matches!(
        undo_cancellation(&order, None, &merchant(), now()),
        Err(UndoError::Irreversible { .. })
    ));
}

#[test]
fn undoing_a_card_refund_needs_a_new_authorization_for_what_went_back() {
    let order = cancelled_by_card();
    let refunded = record_step_outcome(
        order.clone(),
        StepKind::Refund,
        StepOutcome::Refunded {
            amount: money("2600"),
            reference: "re_1".to_owned(),
        },
        &mut SequentialIds::default(),
        now(),
    )
    .unwrap()
    .order;
    let reauthorization = plan_undo(&refunded).unwrap().expect("a new authorization is needed");
    assert_eq!(reauthorization.amount, money("2600"));
    assert_eq!(
        undo_cancellation(&refunded, None, &merchant(), now()),
        Err(UndoError::ReauthorizationMissing)
    );
    let undone = undo_cancellation(&refunded, Some("pi_2".to_owned()), &merchant(), now())
        .unwrap()
        .order;
    assert_eq!(undone.status, OrderStatus::Open);
    assert_eq!(undone.financial_status, FinancialStatus::Authorized);
    assert_eq!(undone.fulfillment_status, FulfillmentStatus::AwaitingShipment);
    assert_eq!(undone.payment.unwrap().reference.as_deref(), Some("pi_2"));
    assert!(
        matches!(plan_undo(&order), Err(UndoError::InProgress { .. })),
        "not while the refund is still running"
    );
}

#[derive(Clone, Debug)]
enum Partner {
    Cancelled,
    Refunded,
    Refused,
    Failed { exhausted: bool },
    Retry,
    Undo,
}

fn partner_event() -> impl Strategy<Value = Partner> {
    prop_oneof![
        Just(Partner::Cancelled),
        Just(Partner::Refunded),
        Just(Partner::Refused),
        any::<bool>().prop_map(|exhausted| Partner::Failed { exhausted }),
        Just(Partner::Retry),
        Just(Partner::Undo),
    ]
}

fn marketplace_order(card: bool) -> Order {
    let mut order = if card {
        card_paid()
    } else {
        paid(PaymentMethod::Channel)
    };
    order.channel_kind = ChannelKind::Rakuten;
    order.channel_order_id = Some("R-1".to_owned());
    order
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the channel and the payment provider answer, and in whatever order the worker and
    /// operators act: the order is cancelled only once the channel confirmed (C3), a refused channel
    /// leaves it open with nothing refunded, nothing is refunded twice or beyond what was paid, and a
    /// marketplace cancellation is never undone (C6).
    #[test]
    fn no_sequence_of_partner_answers_cancels_without_the_channel_or_refunds_twice(
        card in any::<bool>(),
        events in prop::collection::vec(partner_event(), 1..16),
    ) {
        let mut ids = SequentialIds::default();
        let options = CancelOptions { reason_code: Some("8".to_owned()), ..options(None) };
        let (_, change) = cancel_order(marketplace_order(card), &options, &merchant(), &mut ids, now()).unwrap();
        let mut order = change.order;
        for event in events {
            let pending = pending_work(&order).and_then(|work| work.step_kind());
            let outcome = |kind| match (&event, kind) {
                (Partner::Cancelled, StepKind::ChannelCancel) => Some(StepOutcome::ChannelCancelled { message: "ok".to_owned() }),
                (Partner::Refunded, StepKind::Refund) => {
                    Some(StepOutcome::Refunded { amount: order.refundable(), reference: "re_1".to_owned() })
                }
                (Partner::Refused, _) => Some(StepOutcome::Refused { message: "no".to_owned() }),
                (Partner::Failed { exhausted }, _) => Some(StepOutcome::Failed {
                    message: "503".to_owned(),
                    retry_at: (!exhausted).then(|| now().plus_seconds(1)),
                }),
                _ => None,
            };
            let next = match (&event, pending) {
                (Partner::Retry, _) => retry_cancellation(&order, &merchant(), now()).ok(),
                (Partner::Undo, _) => {
                    prop_assert!(undo_cancellation(&order, None, &merchant(), now()).is_err(), "C6: never undone");
                    None
                }
                (_, Some(kind)) => outcome(kind).and_then(|outcome| record_step_outcome(order.clone(), kind, outcome, &mut ids, now()).ok()),
                (_, None) => None,
            };
            if let Some(change) = next {
                order = change.order;
            }
            let channel = order.cancellation.as_ref().and_then(|c| c.step(StepKind::ChannelCancel)).map(|step| step.status);
            if order.status == OrderStatus::Cancelled {
                prop_assert_eq!(channel, Some(StepStatus::Succeeded), "C3: cancelled only after the channel confirmed");
            }
            if order.cancellation.as_ref().is_some_and(|c| c.status == CancellationStatus::Failed) {
                prop_assert_eq!(order.status, OrderStatus::Open);
                prop_assert!(order.refunds.is_empty(), "a refused cancel refunds nothing");
            }
            prop_assert!(order.total_refund_price <= order.total_paid);
            let ledger: Money = order.refunds.iter().map(|refund| refund.amount).sum();
            prop_assert_eq!(ledger, order.total_refund_price);
        }
    }
}

#[test]
fn a_restock_after_the_lines_were_edited_puts_back_the_deduction_snapshot() {
    // I3: two teas were deducted at import; the lines were edited afterwards (five teas, a new mug).
    let mut order = paid(PaymentMethod::BankTransfer);
    order.inventory_deducted = true;
    order.stock_snapshot = vec![("TEA".to_owned(), 2)];
    order.line_items[0].quantity = 5;
    let mut mug = order.line_items[0].clone();
    mug.id = "li_mug".to_owned();
    mug.sku = "MUG".to_owned();
    order.line_items.push(mug);

    let plan = plan_cancellation(&order, &options(Some(RefundMethod::StoreCredit))).unwrap();
    assert_eq!(
        plan.restock,
        vec![("TEA".to_owned(), 2)],
        "the snapshot, not the edited lines"
    );
}

#[test]
fn a_partial_cancel_puts_back_no_more_than_the_snapshot_holds() {
    // B1 with I3: the order's line says five teas but only two were deducted.
    let mut order = paid(PaymentMethod::BankTransfer);
    order.inventory_deducted = true;
    order.stock_snapshot = vec![("TEA".to_owned(), 2)];
    order.line_items[0].quantity = 5;
    let line = order.line_items[0].id.clone();
    let plan = plan_cancellation(
        &order,
        &CancelOptions {
            lines: vec![(line, 3)],
            ..options(Some(RefundMethod::StoreCredit))
        },
    )
    .unwrap();
    assert_eq!(plan.restock, vec![("TEA".to_owned(), 2)]);
    assert!(plan.scope.is_partial());
}
