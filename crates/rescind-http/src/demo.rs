//! Demo data for a first look: a shop with an own-store channel and orders in every shipment status,
//! created only when the database has no shop yet.

use crate::auth::{hash_secret, new_secret};
use anyhow::{anyhow, Result};
use rescind_domain::request_cancellation;
use rescind_domain::{
    Actor, Address, ChannelKind, Currency, Customer, FinancialStatus, FulfillmentStatus, HistoryEntry, Money,
    NewLineItem, NewOrder, Payment, PaymentMethod, Scope,
};
use rescind_store::{new_id, now, ApiToken, Channel, RandomIds, Settings, Shop, Store};

/// What was created, for the operator to use.
pub struct DemoShop {
    pub shop_id: String,
    pub token: String,
    pub orders: usize,
}

/// Seeds the demo shop unless the database already has a shop.
pub async fn seed(store: &Store) -> Result<Option<DemoShop>> {
    if store.count_shops().await? > 0 {
        return Ok(None);
    }
    let shop = Shop {
        id: new_id("shop"),
        name: "Demo shop".to_owned(),
        // Customers of the demo shop may ask to cancel (Q1); one of them has.
        settings: Settings {
            customer_cancellation_requests: true,
            ..Settings::default()
        },
    };
    let token = new_secret();
    store
        .create_shop(
            &shop,
            &ApiToken {
                id: new_id("tok"),
                shop_id: shop.id.clone(),
                token_hash: hash_secret(&token),
                scopes: Scope::ALL.to_vec(),
            },
        )
        .await?;
    let channel = Channel {
        id: new_id("ch"),
        shop_id: shop.id.clone(),
        kind: ChannelKind::OwnStore,
        name: "Own web store".to_owned(),
        base_url: None,
        credentials: None,
        cancel_sync: true,
        created_at: now(),
    };
    store.create_channel(&channel).await?;

    let yen = Currency::parse("JPY")?;
    let statuses = [
        (
            FulfillmentStatus::AwaitingPayment,
            FinancialStatus::Pending,
            PaymentMethod::BankTransfer,
        ),
        (
            FulfillmentStatus::AwaitingShipment,
            FinancialStatus::Paid,
            PaymentMethod::BankTransfer,
        ),
        (
            FulfillmentStatus::AwaitingShipment,
            FinancialStatus::Paid,
            PaymentMethod::Points,
        ),
        (
            FulfillmentStatus::AwaitingAllocation,
            FinancialStatus::Paid,
            PaymentMethod::StoreCredit,
        ),
        (
            FulfillmentStatus::AwaitingConfirmation,
            FinancialStatus::Paid,
            PaymentMethod::BankTransfer,
        ),
        (
            FulfillmentStatus::InProgress,
            FinancialStatus::Paid,
            PaymentMethod::BankTransfer,
        ),
        (
            FulfillmentStatus::Packed,
            FinancialStatus::Paid,
            PaymentMethod::BankTransfer,
        ),
        (
            FulfillmentStatus::Shipped,
            FinancialStatus::Paid,
            PaymentMethod::BankTransfer,
        ),
        (FulfillmentStatus::Delivered, FinancialStatus::Paid, PaymentMethod::Cod),
    ];
    let names = [
        "山田 太郎",
        "佐藤 花子",
        "鈴木 一郎",
        "Emma Clarke",
        "高橋 美咲",
        "田中 健",
        "Liam Wong",
        "伊藤 さくら",
        "渡辺 翔",
    ];
    let mut created = 0;
    for (index, ((fulfillment_status, financial_status, method), name)) in statuses.iter().zip(names).enumerate() {
        let price = Money::parse(&format!("{}", 1200 + 800 * index), yen)?;
        let quantity = 1 + (index % 3) as u32;
        let shipping = Money::parse("600", yen)?;
        let total = price
            .checked_mul(quantity)
            .and_then(|sub| sub.checked_add(shipping))
            .ok_or_else(|| anyhow!("overflow"))?;
        let sku = format!("TEA-{:03}", index + 1);
        store.set_stock(&shop.id, &sku, 20).await?;
        let new_order = NewOrder {
            channel_id: channel.id.clone(),
            channel_kind: ChannelKind::OwnStore,
            channel_order_id: None,
            number: None,
            currency: yen,
            customer: Customer {
                name: name.to_owned(),
                email: Some(format!("customer{index}@example.com")),
                phone: None,
            },
            shipping_address: Address {
                name: name.to_owned(),
                postcode: "150-0001".to_owned(),
                prefecture: Some("東京都".to_owned()),
                province: None,
                address1: "渋谷区神宮前1-2-3".to_owned(),
                address2: None,
                phone: Some("03-1234-5678".to_owned()),
            },
            line_items: vec![NewLineItem {
                channel_line_item_id: None,
                sku,
                title: format!("Sencha {}g", 100 * (index + 1)),
                quantity,
                price,
            }],
            total_shipping: shipping,
            total_tax: Money::ZERO,
            total_discount: Money::ZERO,
            payment: Some(Payment {
                method: *method,
                amount: total,
                provider_id: None,
                reference: None,
                points_amount: Money::ZERO,
            }),
            financial_status: *financial_status,
            fulfillment_status: *fulfillment_status,
            deduct_inventory: true,
            warehouse_id: None,
        };
        let shop_id = shop.id.clone();
        let imported = store
            .import_order(&shop.id, None, &channel.id, None, move |number| {
                let at = now();
                let order = new_order
                    .into_order(&shop_id, number, &mut RandomIds, at)
                    .map_err(|problems| problems.0)?;
                let entry = HistoryEntry::new(
                    at,
                    "order.imported",
                    &Actor::System,
                    format!("Demo order {} imported.", order.number),
                );
                Ok((order, entry))
            })
            .await
            .map_err(|error| anyhow!("failed to seed a demo order: {error}"))?;
        if index == 1 {
            store
                .change_order(&shop.id, &imported.id, |order| {
                    request_cancellation(
                        order,
                        "Ordered the wrong size by mistake.",
                        true,
                        &Actor::System,
                        &mut RandomIds,
                        now(),
                    )
                })
                .await
                .map_err(|error| anyhow!("failed to seed a demo cancellation request: {error:?}"))?;
        }
        created += 1;
    }
    Ok(Some(DemoShop {
        shop_id: shop.id,
        token,
        orders: created,
    }))
}
