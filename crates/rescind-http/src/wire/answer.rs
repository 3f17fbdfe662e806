//! An order written as its answer's JSON straight from the domain's order: the bytes of
//! [`super::order_body`]'s JSON, without first copying each of its strings into an owned body. Every
//! cancellation, import and `GET /orders/{id}` answers with an order; the owned body took some 145 of
//! the 700 allocations of an own-store cancellation (counted with uprobes on mimalloc, thirty-seventh
//! session), each freed again on the request's thread. The owned [`super::OrderBody`] stays the
//! OpenAPI schema and what the bulk results and the console use; a test holds the two byte for byte
//! alike.

use rescind_domain::cancel::CancelScope;
use rescind_domain::money::{Currency, Money};
use rescind_domain::{Cancellation, CancellationRequest, Order, Refund, StepStatus, Timestamp};
use rescind_workflow::webhooks::{rfc3339_in, RFC3339_BYTES};
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

/// The order of an answer, serialized as [`super::OrderBody`] is.
pub(super) struct OrderJson<'a>(pub &'a Order);

/// A time as [`super::rfc3339`] writes it.
struct At(Timestamp);

impl Serialize for At {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(rfc3339_in(self.0, &mut [0; RFC3339_BYTES]))
    }
}

/// An amount as [`Money::format`] writes it.
struct Amount(Money, Currency);

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.formatted(self.1))
    }
}

/// An amount as its `Display` writes it (the cancellation's fee and partial refund).
struct Plain(Money);

impl Serialize for Plain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A list written from `items` through `each`, without collecting it first.
struct Each<'a, T, F>(&'a [T], F);

/// [`Each`], with the closure's signature told by its bound.
fn each<'a, T, F, J>(items: &'a [T], each: F) -> Each<'a, T, F>
where
    F: Fn(&'a T) -> J,
{
    Each(items, each)
}

impl<'a, T, F, J> Serialize for Each<'a, T, F>
where
    F: Fn(&'a T) -> J,
    J: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(&self.1))
    }
}

impl Serialize for OrderJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let order = self.0;
        let currency = order.currency;
        let money = |amount: Money| Amount(amount, currency);
        let mut out = serializer.serialize_struct("OrderBody", 33)?;
        out.serialize_field("id", &order.id)?;
        out.serialize_field("number", &order.number)?;
        out.serialize_field("channel_id", &order.channel_id)?;
        out.serialize_field("channel_kind", order.channel_kind.as_str())?;
        out.serialize_field("channel_order_id", &order.channel_order_id)?;
        out.serialize_field("status", order.status.as_str())?;
        out.serialize_field("financial_status", order.financial_status.as_str())?;
        out.serialize_field("fulfillment_status", order.fulfillment_status.as_str())?;
        out.serialize_field("currency", currency.code())?;
        out.serialize_field("sub_total", &money(order.sub_total))?;
        out.serialize_field("total_shipping", &money(order.total_shipping))?;
        out.serialize_field("total_tax", &money(order.total_tax))?;
        out.serialize_field("total_discount", &money(order.total_discount))?;
        out.serialize_field("total_price", &money(order.total_price))?;
        out.serialize_field("total_paid", &money(order.total_paid))?;
        out.serialize_field("total_refund_price", &money(order.total_refund_price))?;
        out.serialize_field("cancel_reason", &order.cancel_reason)?;
        out.serialize_field("canceled_at", &order.canceled_at.map(At))?;
        out.serialize_field("created_at", &At(order.created_at))?;
        out.serialize_field("updated_at", &At(order.updated_at))?;
        out.serialize_field("customer", &Customer(order))?;
        out.serialize_field("shipping_address", &Address(order))?;
        out.serialize_field("line_items", &each(&order.line_items, |line| LineItem(line, currency)))?;
        out.serialize_field(
            "payment",
            &order.payment.as_ref().map(|payment| Payment(payment, currency)),
        )?;
        out.serialize_field("warehouse_id", &order.warehouse_id)?;
        out.serialize_field(
            "outbound",
            &order.outbound.as_ref().map(|outbound| Outbound(order, outbound)),
        )?;
        out.serialize_field("cancellation", &order.cancellation.as_ref().map(CancellationJson))?;
        out.serialize_field(
            "cancellation_request",
            &order
                .cancellation_request
                .as_ref()
                .map(|request| Request(order, request)),
        )?;
        out.serialize_field("refunds", &each(&order.refunds, |refund| RefundJson(order, refund)))?;
        out.serialize_field("warnings", &each(&order.warnings, |warning| warning.as_str()))?;
        out.end()
    }
}

/// [`super::CustomerBody`].
struct Customer<'a>(&'a Order);

impl Serialize for Customer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let customer = &self.0.customer;
        let mut out = serializer.serialize_struct("CustomerBody", 3)?;
        out.serialize_field("name", &customer.name)?;
        out.serialize_field("email", &customer.email)?;
        out.serialize_field("phone", &customer.phone)?;
        out.end()
    }
}

/// [`super::AddressBody`].
struct Address<'a>(&'a Order);

impl Serialize for Address<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let address = &self.0.shipping_address;
        let mut out = serializer.serialize_struct("AddressBody", 7)?;
        out.serialize_field("name", &address.name)?;
        out.serialize_field("postcode", &address.postcode)?;
        if let Some(prefecture) = &address.prefecture {
            out.serialize_field("prefecture", prefecture)?;
        }
        if let Some(province) = &address.province {
            out.serialize_field("province", province)?;
        }
        out.serialize_field("address1", &address.address1)?;
        out.serialize_field("address2", &address.address2)?;
        out.serialize_field("phone", &address.phone)?;
        out.end()
    }
}

/// [`super::LineItemBody`].
struct LineItem<'a>(&'a rescind_domain::LineItem, Currency);

impl Serialize for LineItem<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let line = self.0;
        let mut out = serializer.serialize_struct("LineItemBody", 7)?;
        out.serialize_field("id", &line.id)?;
        out.serialize_field("channel_line_item_id", &line.channel_line_item_id)?;
        out.serialize_field("sku", &line.sku)?;
        out.serialize_field("title", &line.title)?;
        out.serialize_field("quantity", &line.quantity)?;
        out.serialize_field("cancelled_quantity", &line.cancelled_quantity)?;
        out.serialize_field("price", &Amount(line.price, self.1))?;
        out.end()
    }
}

/// [`super::PaymentBody`].
struct Payment<'a>(&'a rescind_domain::Payment, Currency);

impl Serialize for Payment<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let payment = self.0;
        let mut out = serializer.serialize_struct("PaymentBody", 5)?;
        out.serialize_field("method", payment.method.as_str())?;
        out.serialize_field("amount", &Amount(payment.amount, self.1))?;
        out.serialize_field("provider_id", &payment.provider_id)?;
        out.serialize_field("reference", &payment.reference)?;
        out.serialize_field("points_amount", &Amount(payment.points_amount, self.1))?;
        out.end()
    }
}

/// [`super::OutboundBody`].
struct Outbound<'a>(&'a Order, &'a rescind_domain::Outbound);

impl Serialize for Outbound<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Outbound(order, outbound) = self;
        let mut out = serializer.serialize_struct("OutboundBody", 6)?;
        out.serialize_field("id", &order.id)?;
        out.serialize_field("warehouse_id", &outbound.warehouse_id)?;
        out.serialize_field("external_id", &outbound.external_id)?;
        out.serialize_field("status", outbound.status.as_str())?;
        if let Some(fee) = outbound.fee {
            out.serialize_field("fee", &Amount(fee, order.currency))?;
        }
        if let Some(last_error) = &outbound.last_error {
            out.serialize_field("last_error", last_error)?;
        }
        out.end()
    }
}

/// [`super::CancellationBody`].
struct CancellationJson<'a>(&'a Cancellation);

impl Serialize for CancellationJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let cancellation = self.0;
        let mut out = serializer.serialize_struct("CancellationBody", 20)?;
        out.serialize_field("id", &cancellation.id)?;
        out.serialize_field("status", cancellation.status.as_str())?;
        out.serialize_field("requested_by", cancellation.requested_by.as_str())?;
        out.serialize_field("reason", &cancellation.reason)?;
        out.serialize_field("reason_code", &cancellation.reason_code)?;
        out.serialize_field("reason_detail", &cancellation.reason_detail)?;
        out.serialize_field("staff_note", &cancellation.staff_note)?;
        out.serialize_field("refund", &cancellation.refund)?;
        out.serialize_field(
            "refund_method",
            &cancellation.refund_method.map(|method| method.as_str()),
        )?;
        out.serialize_field("restock", &cancellation.restock)?;
        out.serialize_field("notify_customer", &cancellation.notify_customer)?;
        out.serialize_field("needs_attention", &cancellation.needs_attention)?;
        out.serialize_field(
            "last_error",
            &cancellation
                .steps
                .iter()
                .find(|step| step.status == StepStatus::Failed)
                .and_then(|step| step.last_error.as_deref()),
        )?;
        out.serialize_field("steps", &each(&cancellation.steps, Step))?;
        if let Some(fee) = cancellation.fee {
            out.serialize_field("fee", &Plain(fee))?;
        }
        let (scope, lines, refund_amount): (_, &[_], _) = match &cancellation.scope {
            CancelScope::Order { .. } => ("order", &[], None),
            CancelScope::Lines {
                lines, refund_amount, ..
            } => ("lines", lines, Some(*refund_amount)),
        };
        out.serialize_field("scope", scope)?;
        out.serialize_field("line_items", &each(lines, CancelledLine))?;
        if let Some(refund_amount) = refund_amount {
            out.serialize_field("refund_amount", &Plain(refund_amount))?;
        }
        out.serialize_field("created_at", &At(cancellation.created_at))?;
        out.serialize_field("completed_at", &cancellation.completed_at.map(At))?;
        out.end()
    }
}

/// [`super::StepBody`].
struct Step<'a>(&'a rescind_domain::Step);

impl Serialize for Step<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let step = self.0;
        let mut out = serializer.serialize_struct("StepBody", 6)?;
        out.serialize_field("kind", step.kind.as_str())?;
        out.serialize_field("status", step.status.as_str())?;
        out.serialize_field("message", &step.message)?;
        out.serialize_field("attempts", &step.attempts)?;
        out.serialize_field("last_error", &step.last_error)?;
        out.serialize_field("updated_at", &At(step.updated_at))?;
        out.end()
    }
}

/// [`super::CancelledLineBody`].
struct CancelledLine<'a>(&'a rescind_domain::cancel::CancelledLine);

impl Serialize for CancelledLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let line = self.0;
        let mut out = serializer.serialize_struct("CancelledLineBody", 3)?;
        out.serialize_field("line_item_id", &line.line_item_id)?;
        out.serialize_field("sku", &line.sku)?;
        out.serialize_field("quantity", &line.quantity)?;
        out.end()
    }
}

/// [`super::CancellationRequestBody`].
struct Request<'a>(&'a Order, &'a CancellationRequest);

impl Serialize for Request<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Request(order, request) = self;
        let mut out = serializer.serialize_struct("CancellationRequestBody", 9)?;
        out.serialize_field("id", &request.id)?;
        out.serialize_field("order_id", &order.id)?;
        out.serialize_field("number", &order.number)?;
        out.serialize_field("status", request.status.as_str())?;
        out.serialize_field("reason", &request.reason)?;
        out.serialize_field("decision_reason", &request.decision_reason)?;
        out.serialize_field("cancellation_id", &request.cancellation_id)?;
        out.serialize_field("created_at", &At(request.created_at))?;
        out.serialize_field("decided_at", &request.decided_at.map(At))?;
        out.end()
    }
}

/// [`super::RefundBody`].
struct RefundJson<'a>(&'a Order, &'a Refund);

impl Serialize for RefundJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let RefundJson(order, refund) = self;
        let mut out = serializer.serialize_struct("RefundBody", 7)?;
        out.serialize_field("id", &refund.id)?;
        out.serialize_field("order_id", &order.id)?;
        out.serialize_field("amount", &Amount(refund.amount, order.currency))?;
        out.serialize_field("method", refund.method.as_str())?;
        out.serialize_field("note", &refund.note)?;
        out.serialize_field("cancellation_id", &refund.cancellation_id)?;
        out.serialize_field("created_at", &At(refund.created_at))?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::OrderJson;
    use crate::wire::order_body;
    use rescind_domain::cancel::{CancelScope, CancelledLine};
    use rescind_domain::{
        Address, Cancellation, CancellationRequest, CancellationStatus, ChannelKind, Currency, Customer,
        FinancialStatus, FulfillmentStatus, LineItem, Money, Order, OrderStatus, Outbound, OutboundStatus, Payment,
        PaymentMethod, Refund, RefundMethod, RequestStatus, RequestedBy, Step, StepKind, StepStatus, Timestamp,
        Warning,
    };

    fn at(second: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_795_860_000_000_000 + second * 1_000_000 + 123_456)
    }

    /// An order with every optional part missing.
    fn bare_order() -> Order {
        let jpy = Currency::parse("JPY").unwrap();
        let yen = |text: &str| Money::parse(text, jpy).unwrap();
        Order {
            id: "ord_1".to_owned(),
            shop_id: "shp_1".to_owned(),
            number: "1001".to_owned(),
            channel_id: "chn_1".to_owned(),
            channel_kind: ChannelKind::OwnStore,
            channel_order_id: None,
            status: OrderStatus::Open,
            financial_status: FinancialStatus::Pending,
            fulfillment_status: FulfillmentStatus::AwaitingPayment,
            currency: jpy,
            sub_total: yen("2400"),
            total_shipping: yen("600"),
            total_tax: yen("0"),
            total_discount: yen("0"),
            total_price: yen("3000"),
            total_paid: yen("0"),
            total_refund_price: yen("0"),
            cancel_reason: None,
            canceled_at: None,
            created_at: at(0),
            updated_at: at(1),
            customer: Customer {
                name: "山田 太郎".to_owned(),
                email: None,
                phone: None,
            },
            shipping_address: Address {
                name: "山田 太郎".to_owned(),
                postcode: "100-0001".to_owned(),
                prefecture: None,
                province: None,
                address1: "千代田区千代田1-1".to_owned(),
                address2: None,
                phone: None,
            },
            line_items: Vec::new(),
            payment: None,
            inventory_deducted: false,
            stock_snapshot: Vec::new(),
            restocked: false,
            warehouse_id: None,
            outbound: None,
            warnings: Vec::new(),
            refunds: Vec::new(),
            cancellation: None,
            cancellation_request: None,
        }
    }

    /// An order with every optional part present, in US dollars, with text that needs escaping.
    fn full_order() -> Order {
        let usd = Currency::parse("USD").unwrap();
        let dollars = |text: &str| Money::parse(text, usd).unwrap();
        let step = |kind, status, last_error: Option<&str>| Step {
            kind,
            status,
            message: "refund: 12.50 back to the card \"…\"\n".to_owned(),
            attempts: 2,
            generation: 1,
            last_error: last_error.map(str::to_owned),
            updated_at: at(5),
        };
        Order {
            channel_kind: ChannelKind::Shopify,
            channel_order_id: Some("#1001".to_owned()),
            status: OrderStatus::Cancelled,
            financial_status: FinancialStatus::Paid,
            fulfillment_status: FulfillmentStatus::Cancelled,
            currency: usd,
            sub_total: dollars("24"),
            total_shipping: dollars("6.5"),
            total_tax: dollars("2.4"),
            total_discount: Money::from_minor_units(-0, usd),
            total_price: dollars("32.90"),
            total_paid: dollars("32.90"),
            total_refund_price: dollars("12.5"),
            cancel_reason: Some("customer\tchanged mind".to_owned()),
            canceled_at: Some(at(6)),
            customer: Customer {
                name: "Ann \"A\" Lee".to_owned(),
                email: Some("ann@example.com".to_owned()),
                phone: Some("+1 555 0100".to_owned()),
            },
            shipping_address: Address {
                name: "Ann Lee".to_owned(),
                postcode: "94103".to_owned(),
                prefecture: Some("東京都".to_owned()),
                province: Some("CA".to_owned()),
                address1: "1 Market St".to_owned(),
                address2: Some("Suite \\5".to_owned()),
                phone: Some("+1 555 0101".to_owned()),
            },
            line_items: vec![
                LineItem {
                    id: "li_1".to_owned(),
                    sku: "TEE-S".to_owned(),
                    title: "T-shirt".to_owned(),
                    quantity: 2,
                    cancelled_quantity: 1,
                    channel_line_item_id: Some("shop-li-1".to_owned()),
                    price: dollars("12"),
                },
                LineItem {
                    id: "li_2".to_owned(),
                    sku: "CAP".to_owned(),
                    title: "Cap".to_owned(),
                    quantity: 1,
                    cancelled_quantity: 0,
                    channel_line_item_id: None,
                    price: dollars("0"),
                },
            ],
            payment: Some(Payment {
                method: PaymentMethod::CreditCard,
                amount: dollars("30.90"),
                provider_id: Some("pay_1".to_owned()),
                reference: Some("ch_1".to_owned()),
                points_amount: dollars("2"),
            }),
            warehouse_id: Some("wh_1".to_owned()),
            outbound: Some(Outbound {
                warehouse_id: "wh_1".to_owned(),
                external_id: Some("OUT-1".to_owned()),
                status: OutboundStatus::Requested,
                fee: Some(dollars("3.3")),
                attempts: 1,
                last_error: Some("timed out".to_owned()),
            }),
            warnings: vec![Warning::RefundedButWillShip, Warning::CancelRequestedMayShip],
            refunds: vec![Refund {
                id: "ref_1".to_owned(),
                amount: dollars("12.5"),
                method: RefundMethod::OriginalPayment,
                note: Some("refund on cancellation".to_owned()),
                cancellation_id: Some("can_1".to_owned()),
                actor: "system".to_owned(),
                created_at: at(4),
            }],
            cancellation: Some(Cancellation {
                id: "can_1".to_owned(),
                status: CancellationStatus::Processing,
                scope: CancelScope::Lines {
                    lines: vec![CancelledLine {
                        line_item_id: "li_1".to_owned(),
                        sku: "TEE-S".to_owned(),
                        quantity: 1,
                    }],
                    refund_amount: dollars("12.5"),
                    restock: vec![("TEE-S".to_owned(), 1)],
                },
                requested_by: RequestedBy::Customer,
                reason: Some("changed mind".to_owned()),
                reason_code: Some("customer_changed_mind".to_owned()),
                reason_detail: Some("asked by mail".to_owned()),
                staff_note: Some("ok'd".to_owned()),
                refund: true,
                refund_method: Some(RefundMethod::OriginalPayment),
                restock: true,
                notify_customer: true,
                needs_attention: true,
                steps: vec![
                    step(StepKind::ChannelCancel, StepStatus::Succeeded, None),
                    step(StepKind::Refund, StepStatus::Failed, Some("card declined")),
                ],
                fulfillment_status_before: FulfillmentStatus::AwaitingPayment,
                financial_status_before: FinancialStatus::Paid,
                reauthorization_generation: 0,
                fee: Some(dollars("1.10")),
                created_at: at(2),
                updated_at: at(5),
                completed_at: Some(at(6)),
            }),
            cancellation_request: Some(CancellationRequest {
                id: "req_1".to_owned(),
                status: RequestStatus::Requested,
                reason: "please".to_owned(),
                decision_reason: Some("fine".to_owned()),
                cancellation_id: Some("can_1".to_owned()),
                created_at: at(1),
                decided_at: Some(at(2)),
            }),
            ..bare_order()
        }
    }

    #[test]
    fn an_order_s_answer_is_byte_for_byte_the_json_of_its_order_body() {
        let bare = bare_order();
        let full = full_order();
        let mut whole = full_order();
        let cancellation = whole.cancellation.as_mut().unwrap();
        cancellation.scope = CancelScope::Order { after_partial: true };
        cancellation.fee = None;
        cancellation.completed_at = None;
        whole.outbound.as_mut().unwrap().fee = None;
        whole.outbound.as_mut().unwrap().last_error = None;
        whole.shipping_address.province = None;
        for order in [&bare, &full, &whole] {
            let owned = serde_json::to_string(&order_body(order)).unwrap();
            let written = serde_json::to_string(&OrderJson(order)).unwrap();
            assert_eq!(written, owned);
        }
        // The parts that are present in the full order are written, not left out.
        let written = serde_json::to_string(&OrderJson(&full)).unwrap();
        for part in [
            "\"fee\":\"3.30\"",
            "\"fee\":\"1.1",
            "\"refund_amount\":\"12.5",
            "\"province\":\"CA\"",
            "card declined",
        ] {
            assert!(written.contains(part), "{part} in {written}");
        }
    }
}
