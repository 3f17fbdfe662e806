//! The JSON shapes of API.md, and their conversion from domain values. The domain knows nothing of
//! these shapes; this module is the only place that does.

use rescind_domain::cancel::CancelScope;
use rescind_domain::{
    Cancellation, CancellationRequest, CancellationStatus, ChannelKind, FinancialStatus, FulfillmentStatus,
    HistoryEntry, Order, OrderStatus, PaymentMethod, RefundMethod, RequestedBy, Scope, StepKind, StepStatus, Warning,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::ToSchema;

pub use rescind_workflow::webhooks::rfc3339;

fn enum_schema(names: Vec<&'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .build()
}

macro_rules! enum_schemas {
    ($($function:ident => $enum:ty),+ $(,)?) => {
        $(pub(crate) fn $function() -> Object { enum_schema(<$enum>::names()) })+
    };
}

enum_schemas! {
    order_status_schema => OrderStatus,
    financial_status_schema => FinancialStatus,
    fulfillment_status_schema => FulfillmentStatus,
    cancellation_status_schema => CancellationStatus,
    requested_by_schema => RequestedBy,
    step_kind_schema => StepKind,
    step_status_schema => StepStatus,
    refund_method_schema => RefundMethod,
    payment_method_schema => PaymentMethod,
    channel_kind_schema => ChannelKind,
    warning_schema => Warning,
    scope_schema => Scope,
    outbound_status_schema => rescind_domain::OutboundStatus,
}

/// One of `names` or `null`.
fn nullable_enum_schema(names: Vec<&'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(
            names
                .into_iter()
                .map(serde_json::Value::from)
                .chain([serde_json::Value::Null]),
        ))
        .build()
}

/// A refund method or `null` (a cancellation that refunds nothing has none).
fn nullable_refund_method_schema() -> Object {
    nullable_enum_schema(RefundMethod::names())
}

/// An order status or `null` (no such order).
fn nullable_order_status_schema() -> Object {
    nullable_enum_schema(OrderStatus::names())
}

fn warnings_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(warning_schema())
        .build()
}

fn scopes_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(scope_schema())
        .build()
}

// ---- platform administration ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShopRequest {
    pub name: Option<String>,
    pub settings: Option<SettingsPatchBody>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ShopBody {
    pub id: String,
    pub name: String,
    pub settings: SettingsBody,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CreateShopResponse {
    pub shop: ShopBody,
    /// The shop's first token, with every scope. Shown once; only its hash is kept.
    pub token: String,
    #[schema(schema_with = scopes_schema)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    #[schema(schema_with = scopes_schema)]
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CreateTokenResponse {
    pub id: String,
    /// Shown once; only its hash is kept.
    pub token: String,
    #[schema(schema_with = scopes_schema)]
    pub scopes: Vec<String>,
}

// ---- settings ----

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SettingsBody {
    pub customer_cancellation_requests: bool,
    pub inventory_push_interval_s: i64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatchBody {
    pub customer_cancellation_requests: Option<bool>,
    /// Seconds between stock pushes; 0 pushes at once.
    pub inventory_push_interval_s: Option<i64>,
}

// ---- channels ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    #[schema(schema_with = channel_kind_schema)]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub base_url: Option<String>,
    /// Write-only: never returned, never logged.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
    pub cancel_sync: Option<bool>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ChannelBody {
    pub id: String,
    #[schema(schema_with = channel_kind_schema)]
    pub kind: String,
    pub name: String,
    pub base_url: Option<String>,
    pub cancel_sync: bool,
    pub created_at: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentProviderRequest {
    #[schema(example = "stripe")]
    pub kind: Option<String>,
    pub name: Option<String>,
    /// The API origin, e.g. `https://api.stripe.com`, or a simulator's.
    pub base_url: Option<String>,
    /// Write-only, e.g. `{"secret_key": "sk_live_…"}`.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PaymentProviderBody {
    pub id: String,
    #[schema(example = "stripe")]
    pub kind: String,
    pub name: String,
    pub base_url: String,
    pub created_at: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PaymentProviderList {
    pub items: Vec<PaymentProviderBody>,
}

pub fn payment_provider_body(provider: &rescind_store::PaymentProvider) -> PaymentProviderBody {
    PaymentProviderBody {
        id: provider.id.clone(),
        kind: provider.kind.as_str().to_owned(),
        name: provider.name.clone(),
        base_url: provider.base_url.clone(),
        created_at: rfc3339(provider.created_at),
    }
}

/// One of a channel's cancel reasons (H2).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CancelReasonBody {
    /// The channel's own code: Rakuten `4`, Yahoo! `230`, Amazon `NoInventory`, Shopify `CUSTOMER`.
    pub code: String,
    /// In the language of `Accept-Language` (Japanese for `ja`, English otherwise).
    pub label: String,
    pub label_ja: String,
    pub label_en: String,
    #[schema(example = "customer")]
    pub group: String,
    pub detail_required: bool,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CancelReasonList {
    pub items: Vec<CancelReasonBody>,
    /// A cancel of this channel's orders must name one of these codes.
    pub reason_code_required: bool,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PollBody {
    /// Open orders the channel was asked about.
    pub checked: usize,
    /// Orders found cancelled at the channel, now cancelled here.
    pub cancelled_order_ids: Vec<String>,
}

/// A channel's report of an order cancelled on its side. Shopify's `orders/cancelled` payload is
/// accepted as it is (its `id` is the channel order id).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChannelWebhook {
    pub channel_order_id: Option<String>,
    #[schema(example = "order_cancelled")]
    pub event: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// `cancelled` (the cancellation now runs here), `already_cancelled` (a repeat: nothing changed),
    /// or `ignored` (no such order here).
    pub status: String,
    pub order_id: Option<String>,
}

/// One entry of the sync history (F5).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SyncHistoryEntryBody {
    pub at: String,
    #[schema(example = "cancel")]
    pub kind: String,
    /// The order the call was about; null for a stock push (`inventory_push`), which concerns SKUs.
    pub order_id: Option<String>,
    /// The system called, e.g. `rakuten ch_01…`.
    pub target: String,
    pub request: String,
    #[schema(example = "ok")]
    pub result: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SyncHistoryList {
    pub items: Vec<SyncHistoryEntryBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSettingsBody {
    /// C4: ask the warehouse to cancel while it picks (default false).
    pub cancel_after_confirmation: Option<bool>,
    /// F4: recipient changes update the outbound request before confirmation (default true).
    pub sync_modifications: Option<bool>,
    /// F4: recipient changes during picking go as a modification request (default false).
    pub modify_after_confirmation: Option<bool>,
    /// The warehouse API's rate limit: requests per window (default 60).
    pub rate_limit: Option<u32>,
    /// The window of the rate limit, in milliseconds (default 60000).
    pub rate_limit_window_ms: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWarehouseRequest {
    #[schema(example = "openlogi")]
    pub kind: Option<String>,
    pub name: Option<String>,
    /// The API origin including `/api`, e.g. `https://api.openlogi.com/api`, or a simulator's.
    pub base_url: Option<String>,
    /// Write-only: `{"access_token", "webhook_secret", "account_id"?}`.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
    pub settings: Option<WarehouseSettingsBody>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WarehouseSettingsView {
    pub cancel_after_confirmation: bool,
    pub sync_modifications: bool,
    pub modify_after_confirmation: bool,
    pub rate_limit: u32,
    pub rate_limit_window_ms: u64,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WarehouseBody {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub base_url: String,
    pub settings: WarehouseSettingsView,
    pub created_at: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WarehouseList {
    pub items: Vec<WarehouseBody>,
}

/// A warehouse's report: an outbound status change, or its answer to a cancellation request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WarehouseEventBody {
    pub external_id: Option<String>,
    #[schema(schema_with = outbound_status_schema)]
    pub status: Option<String>,
    /// `accepted` or `rejected`.
    pub cancel_request: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WarehouseEventReceipt {
    /// `applied`, or `ignored` when no order here has that outbound request.
    pub status: String,
    pub order_id: Option<String>,
}

pub fn warehouse_body(warehouse: &rescind_store::Warehouse) -> WarehouseBody {
    WarehouseBody {
        id: warehouse.id.clone(),
        kind: warehouse.kind.as_str().to_owned(),
        name: warehouse.name.clone(),
        base_url: warehouse.base_url.clone(),
        settings: WarehouseSettingsView {
            cancel_after_confirmation: warehouse.settings.cancel_after_confirmation,
            sync_modifications: warehouse.settings.sync_modifications,
            modify_after_confirmation: warehouse.settings.modify_after_confirmation,
            rate_limit: warehouse.rate_limit,
            rate_limit_window_ms: warehouse.rate_limit_window_ms,
        },
        created_at: rfc3339(warehouse.created_at),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockRequest {
    pub available: Option<i64>,
}

/// `PUT /inventory/{sku}/listings`: every channel that sells the SKU (I5), replacing the list before.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetListingsRequest {
    pub listings: Option<Vec<ListingInput>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingInput {
    pub channel_id: Option<String>,
    /// The channel's id of the listing: Shopify's inventory item (required), Rakuten's manageNumber,
    /// Yahoo!'s item code, Amazon's seller SKU (these three default to the SKU), Shoplazza's variant
    /// (required).
    pub external_id: Option<String>,
    /// Shopify's location of the stock (required for Shopify).
    pub location_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ListingBody {
    pub channel_id: String,
    pub external_id: String,
    pub location_id: Option<String>,
}

/// Where a SKU is sold; its level is pushed to each (I5).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ListingsBody {
    pub sku: String,
    pub listings: Vec<ListingBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStockRequest {
    pub delta: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct StockBody {
    pub sku: String,
    pub available: i64,
    pub updated_at: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct StockList {
    pub items: Vec<StockBody>,
    pub next_cursor: Option<String>,
}

// ---- orders ----

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerBody {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    pub name: Option<String>,
    pub postcode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineItemInput {
    /// The channel's own id of the line; required for Amazon (its AmazonOrderItemCode).
    pub channel_line_item_id: Option<String>,
    pub sku: Option<String>,
    pub title: Option<String>,
    pub quantity: Option<i64>,
    /// Unit price, a decimal string.
    #[schema(value_type = Option<String>, example = "1200")]
    pub price: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentInput {
    #[schema(schema_with = payment_method_schema)]
    pub method: Option<String>,
    #[schema(value_type = Option<String>, example = "3960")]
    pub amount: Option<Value>,
    pub provider_id: Option<String>,
    pub reference: Option<String>,
    #[schema(value_type = Option<String>, example = "0")]
    pub points_amount: Option<Value>,
}

/// `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportOrderRequest {
    pub channel_id: Option<String>,
    pub channel_order_id: Option<String>,
    pub number: Option<String>,
    #[schema(example = "JPY")]
    pub currency: Option<String>,
    pub customer: Option<CustomerBody>,
    pub shipping_address: Option<AddressBody>,
    pub line_items: Option<Vec<LineItemInput>>,
    #[schema(value_type = Option<String>)]
    pub total_shipping: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub total_tax: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub total_discount: Option<Value>,
    pub payment: Option<PaymentInput>,
    #[schema(schema_with = financial_status_schema)]
    pub financial_status: Option<String>,
    #[schema(schema_with = fulfillment_status_schema)]
    pub fulfillment_status: Option<String>,
    pub deduct_inventory: Option<bool>,
    pub warehouse_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct LineItemBody {
    pub id: String,
    pub channel_line_item_id: Option<String>,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub cancelled_quantity: u32,
    #[schema(example = "1200")]
    pub price: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PaymentBody {
    #[schema(schema_with = payment_method_schema)]
    pub method: String,
    pub amount: String,
    pub provider_id: Option<String>,
    pub reference: Option<String>,
    pub points_amount: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct StepBody {
    #[schema(schema_with = step_kind_schema)]
    pub kind: String,
    #[schema(schema_with = step_status_schema)]
    pub status: String,
    pub message: String,
    pub attempts: u32,
    /// The last failure of the step's external call.
    pub last_error: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CancellationBody {
    pub id: String,
    #[schema(schema_with = cancellation_status_schema)]
    pub status: String,
    #[schema(schema_with = requested_by_schema)]
    pub requested_by: String,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub reason_detail: Option<String>,
    pub staff_note: Option<String>,
    pub refund: bool,
    #[schema(schema_with = nullable_refund_method_schema)]
    pub refund_method: Option<String>,
    pub restock: bool,
    pub notify_customer: bool,
    pub needs_attention: bool,
    /// Why it needs attention: the failed step's last error.
    pub last_error: Option<String>,
    pub steps: Vec<StepBody>,
    /// The warehouse's fee for a cancellation request (C4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    /// `order` (the whole order) or `lines` (a partial cancellation, B1).
    #[schema(schema_with = cancel_scope_schema)]
    pub scope: String,
    /// The quantities a partial cancellation took out; empty for the whole order.
    pub line_items: Vec<CancelledLineBody>,
    /// What a partial cancellation gives back: its lines' price with their share of tax and discount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<String>,
    pub created_at: String,
    pub completed_at: Option<String>,
}

/// A quantity of one line cancelled on its own (B1).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CancelledLineBody {
    pub line_item_id: String,
    pub sku: String,
    pub quantity: u32,
}

fn cancel_scope_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["order", "lines"]))
        .build()
}

/// The lines of a scope, for the API.
pub fn cancelled_lines_body(scope: &CancelScope) -> Vec<CancelledLineBody> {
    match scope {
        CancelScope::Order { .. } => Vec::new(),
        CancelScope::Lines { lines, .. } => lines
            .iter()
            .map(|line| CancelledLineBody {
                line_item_id: line.line_item_id.clone(),
                sku: line.sku.clone(),
                quantity: line.quantity,
            })
            .collect(),
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct RefundBody {
    pub id: String,
    pub order_id: String,
    pub amount: String,
    #[schema(schema_with = refund_method_schema)]
    pub method: String,
    pub note: Option<String>,
    pub cancellation_id: Option<String>,
    pub created_at: String,
}

/// The warehouse's outbound request for the order (F1), once the order is ready to ship.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct OutboundBody {
    /// rescind's id of it, the identifier the warehouse knows it by (the order id).
    pub id: String,
    pub warehouse_id: String,
    /// The warehouse's id; null until the warehouse confirmed the request.
    pub external_id: Option<String>,
    #[schema(schema_with = outbound_status_schema)]
    pub status: String,
    /// The fee of a cancellation or modification request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The order object of API.md.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct OrderBody {
    pub id: String,
    pub number: String,
    pub channel_id: String,
    #[schema(schema_with = channel_kind_schema)]
    pub channel_kind: String,
    pub channel_order_id: Option<String>,
    #[schema(schema_with = order_status_schema)]
    pub status: String,
    #[schema(schema_with = financial_status_schema)]
    pub financial_status: String,
    #[schema(schema_with = fulfillment_status_schema)]
    pub fulfillment_status: String,
    pub currency: String,
    pub sub_total: String,
    pub total_shipping: String,
    pub total_tax: String,
    pub total_discount: String,
    pub total_price: String,
    pub total_paid: String,
    pub total_refund_price: String,
    pub cancel_reason: Option<String>,
    pub canceled_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub customer: CustomerBody,
    pub shipping_address: AddressBody,
    pub line_items: Vec<LineItemBody>,
    pub payment: Option<PaymentBody>,
    pub warehouse_id: Option<String>,
    pub outbound: Option<OutboundBody>,
    pub cancellation: Option<CancellationBody>,
    /// The customer's latest cancellation request (Q1); `status` `requested` shows as
    /// "cancellation requested (customer)".
    pub cancellation_request: Option<CancellationRequestBody>,
    pub refunds: Vec<RefundBody>,
    #[schema(schema_with = warnings_schema)]
    pub warnings: Vec<String>,
}

/// `PATCH /orders/{id}`: the customer and/or the shipping address. Items are never changed this way.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyOrderRequest {
    pub customer: Option<CustomerBody>,
    pub shipping_address: Option<AddressBody>,
}

/// What reached the warehouse (F4).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ModificationSyncBody {
    /// `applied`, `requested`, `not_synced` or `not_applicable`.
    #[schema(example = "applied")]
    pub status: String,
    pub message: String,
}

/// The order after a change, and what reached the warehouse.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ModifiedOrderBody {
    #[serde(flatten)]
    pub order: OrderBody,
    pub modification_sync: ModificationSyncBody,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct OrderList {
    pub items: Vec<OrderBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct HistoryEntryBody {
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct HistoryList {
    pub items: Vec<HistoryEntryBody>,
}

// ---- cancelling ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelLineItemInput {
    pub line_item_id: Option<String>,
    pub quantity: Option<i64>,
}

/// Declares a request body holding the cancel options of W1 (shared by the single and the bulk
/// cancel) plus the fields given.
macro_rules! cancel_request {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            pub reason: Option<String>,
            /// The channel's own reason code (H2).
            pub reason_code: Option<String>,
            pub reason_detail: Option<String>,
            pub staff_note: Option<String>,
            /// Give the money back (default true).
            pub refund: Option<bool>,
            /// Default: the way the customer paid.
            #[schema(schema_with = refund_method_schema)]
            pub refund_method: Option<String>,
            /// Put the stock back (default true).
            pub restock: Option<bool>,
            /// Tell the customer (default true).
            pub notify_customer: Option<bool>,
        }

        impl $name {
            /// The cancel options of this body, for validation.
            pub fn cancel_options(&self) -> CancelOptionsBody<'_> {
                CancelOptionsBody {
                    reason: &self.reason,
                    reason_code: &self.reason_code,
                    reason_detail: &self.reason_detail,
                    staff_note: &self.staff_note,
                    refund: self.refund,
                    refund_method: &self.refund_method,
                    restock: self.restock,
                    notify_customer: self.notify_customer,
                }
            }
        }
    };
}

/// The cancel options of a request body, as given.
#[derive(Clone, Copy, Debug)]
pub struct CancelOptionsBody<'a> {
    pub reason: &'a Option<String>,
    pub reason_code: &'a Option<String>,
    pub reason_detail: &'a Option<String>,
    pub staff_note: &'a Option<String>,
    pub refund: Option<bool>,
    pub refund_method: &'a Option<String>,
    pub restock: Option<bool>,
    pub notify_customer: Option<bool>,
}

cancel_request! {
    /// `POST /orders/{id}/cancel`: the options of a cancel (W1); every field is optional.
    pub struct CancelRequest {
        /// Cancel only these quantities of these lines (B1); leave out to cancel the whole order.
        pub line_items: Option<Vec<CancelLineItemInput>>,
        /// Answer the plan without changing anything (B2).
        pub dry_run: Option<bool>,
    }
}

cancel_request! {
    /// `POST /orders/cancel`: the cancel options plus the orders, at most 1000.
    pub struct BulkCancelRequest {
        pub order_ids: Option<Vec<String>>,
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct BulkCancelResult {
    pub order_id: String,
    pub number: Option<String>,
    pub ok: bool,
    /// The order's status after the attempt; null when there is no such order.
    #[schema(schema_with = nullable_order_status_schema)]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `channel: …` and `restock: …` (W8).
    pub messages: Vec<String>,
    /// The warehouse step's message: what happened to the outbound request; null when the order
    /// has no warehouse step.
    #[serde(default)]
    pub warehouse_message: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct BulkCancelResponse {
    pub results: Vec<BulkCancelResult>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PlanStepBody {
    #[schema(schema_with = step_kind_schema)]
    pub kind: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct RestockLine {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PlanBody {
    pub steps: Vec<PlanStepBody>,
    /// The lines a partial cancellation would take out (B1); empty for the whole order.
    pub line_items: Vec<CancelledLineBody>,
    pub refund_amount: String,
    pub restock: Vec<RestockLine>,
    #[schema(schema_with = warnings_schema)]
    pub warnings: Vec<String>,
    #[schema(schema_with = cancellation_status_schema)]
    pub cancellation_status: String,
}

/// What `POST /orders/{id}/cancel` answers with 200: the order, or with `dry_run` the plan. For the
/// OpenAPI document only.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum CancelAnswer {
    Order(Box<OrderBody>),
    DryRun(DryRunBody),
}

/// The answer to a dry run (B2).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct DryRunBody {
    pub plan: PlanBody,
}

/// A cancellation with its order, in lists.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CancellationListItem {
    pub order_id: String,
    pub number: String,
    #[serde(flatten)]
    pub cancellation: CancellationBody,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CancellationList {
    pub items: Vec<CancellationListItem>,
    pub next_cursor: Option<String>,
}

/// `POST /orders/{id}/uncancel`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UndoRequest {
    /// Undo even when the restocked goods are no longer in stock (U2).
    pub force: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRefundRequest {
    #[schema(value_type = Option<String>, example = "1200")]
    pub amount: Option<Value>,
    #[schema(schema_with = refund_method_schema)]
    pub method: Option<String>,
    pub note: Option<String>,
}

/// The refund recorded, and the order after it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct RecordRefundResponse {
    #[serde(flatten)]
    pub refund: RefundBody,
    pub order: OrderBody,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "ok")]
    pub status: String,
}

// ---- conversions ----

pub fn cancellation_body(cancellation: &Cancellation) -> CancellationBody {
    CancellationBody {
        id: cancellation.id.clone(),
        status: cancellation.status.as_str().to_owned(),
        requested_by: cancellation.requested_by.as_str().to_owned(),
        reason: cancellation.reason.clone(),
        reason_code: cancellation.reason_code.clone(),
        reason_detail: cancellation.reason_detail.clone(),
        staff_note: cancellation.staff_note.clone(),
        refund: cancellation.refund,
        refund_method: cancellation.refund_method.map(|method| method.as_str().to_owned()),
        restock: cancellation.restock,
        notify_customer: cancellation.notify_customer,
        needs_attention: cancellation.needs_attention,
        last_error: cancellation
            .steps
            .iter()
            .find(|step| step.status == StepStatus::Failed)
            .and_then(|step| step.last_error.clone()),
        steps: cancellation
            .steps
            .iter()
            .map(|step| StepBody {
                kind: step.kind.as_str().to_owned(),
                status: step.status.as_str().to_owned(),
                message: step.message.clone(),
                attempts: step.attempts,
                last_error: step.last_error.clone(),
                updated_at: rfc3339(step.updated_at),
            })
            .collect(),
        fee: cancellation.fee.map(|fee| fee.to_string()),
        scope: match cancellation.scope {
            CancelScope::Order { .. } => "order",
            CancelScope::Lines { .. } => "lines",
        }
        .to_owned(),
        line_items: cancelled_lines_body(&cancellation.scope),
        refund_amount: match &cancellation.scope {
            CancelScope::Order { .. } => None,
            CancelScope::Lines { refund_amount, .. } => Some(refund_amount.to_string()),
        },
        created_at: rfc3339(cancellation.created_at),
        completed_at: cancellation.completed_at.map(rfc3339),
    }
}

pub fn refund_body(order: &Order, refund: &rescind_domain::Refund) -> RefundBody {
    RefundBody {
        id: refund.id.clone(),
        order_id: order.id.clone(),
        amount: refund.amount.format(order.currency),
        method: refund.method.as_str().to_owned(),
        note: refund.note.clone(),
        cancellation_id: refund.cancellation_id.clone(),
        created_at: rfc3339(refund.created_at),
    }
}

/// What an order's answer is written into at first: an order of two lines with a whole cancellation
/// and its refund is about 2.9 KB of JSON; axum's `Json` starts at 128 bytes and doubles five times.
pub const ORDER_ANSWER_BYTES: usize = 4 * 1024;

/// An order as the answer of a request (`status`: 200, 201, 202): [`order_body`] as JSON.
pub fn order_answer(status: axum::http::StatusCode, order: &Order) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut json = Vec::with_capacity(ORDER_ANSWER_BYTES);
    match serde_json::to_writer(&mut json, &order_body(order)) {
        Ok(()) => (
            status,
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(error) => crate::error::ApiError::internal(&error.into()).into_response(),
    }
}

pub fn order_body(order: &Order) -> OrderBody {
    let currency = order.currency;
    let money = |amount: rescind_domain::Money| amount.format(currency);
    OrderBody {
        id: order.id.clone(),
        number: order.number.clone(),
        channel_id: order.channel_id.clone(),
        channel_kind: order.channel_kind.as_str().to_owned(),
        channel_order_id: order.channel_order_id.clone(),
        status: order.status.as_str().to_owned(),
        financial_status: order.financial_status.as_str().to_owned(),
        fulfillment_status: order.fulfillment_status.as_str().to_owned(),
        currency: currency.code().to_owned(),
        sub_total: money(order.sub_total),
        total_shipping: money(order.total_shipping),
        total_tax: money(order.total_tax),
        total_discount: money(order.total_discount),
        total_price: money(order.total_price),
        total_paid: money(order.total_paid),
        total_refund_price: money(order.total_refund_price),
        cancel_reason: order.cancel_reason.clone(),
        canceled_at: order.canceled_at.map(rfc3339),
        created_at: rfc3339(order.created_at),
        updated_at: rfc3339(order.updated_at),
        customer: CustomerBody {
            name: Some(order.customer.name.clone()),
            email: order.customer.email.clone(),
            phone: order.customer.phone.clone(),
        },
        shipping_address: AddressBody {
            name: Some(order.shipping_address.name.clone()),
            postcode: Some(order.shipping_address.postcode.clone()),
            prefecture: order.shipping_address.prefecture.clone(),
            province: order.shipping_address.province.clone(),
            address1: Some(order.shipping_address.address1.clone()),
            address2: order.shipping_address.address2.clone(),
            phone: order.shipping_address.phone.clone(),
        },
        line_items: order
            .line_items
            .iter()
            .map(|line| LineItemBody {
                id: line.id.clone(),
                channel_line_item_id: line.channel_line_item_id.clone(),
                sku: line.sku.clone(),
                title: line.title.clone(),
                quantity: line.quantity,
                cancelled_quantity: line.cancelled_quantity,
                price: money(line.price),
            })
            .collect(),
        payment: order.payment.as_ref().map(|payment| PaymentBody {
            method: payment.method.as_str().to_owned(),
            amount: money(payment.amount),
            provider_id: payment.provider_id.clone(),
            reference: payment.reference.clone(),
            points_amount: money(payment.points_amount),
        }),
        warehouse_id: order.warehouse_id.clone(),
        outbound: order.outbound.as_ref().map(|outbound| OutboundBody {
            id: order.id.clone(),
            warehouse_id: outbound.warehouse_id.clone(),
            external_id: outbound.external_id.clone(),
            status: outbound.status.as_str().to_owned(),
            fee: outbound.fee.map(money),
            last_error: outbound.last_error.clone(),
        }),
        cancellation: order.cancellation.as_ref().map(cancellation_body),
        cancellation_request: order
            .cancellation_request
            .as_ref()
            .map(|request| request_body(&order.id, &order.number, request)),
        refunds: order.refunds.iter().map(|refund| refund_body(order, refund)).collect(),
        warnings: order
            .warnings
            .iter()
            .map(|warning| warning.as_str().to_owned())
            .collect(),
    }
}

/// A customer's cancellation request (API.md "Customer requests").
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CancellationRequestBody {
    pub id: String,
    pub order_id: String,
    pub number: String,
    /// `requested`, `accepted` or `rejected`.
    pub status: String,
    /// The customer's words.
    pub reason: String,
    /// The operator's reason for the decision.
    pub decision_reason: Option<String>,
    /// The cancellation an accepted request started.
    pub cancellation_id: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

pub fn request_body(order_id: &str, number: &str, request: &CancellationRequest) -> CancellationRequestBody {
    CancellationRequestBody {
        id: request.id.clone(),
        order_id: order_id.to_owned(),
        number: number.to_owned(),
        status: request.status.as_str().to_owned(),
        reason: request.reason.clone(),
        decision_reason: request.decision_reason.clone(),
        cancellation_id: request.cancellation_id.clone(),
        created_at: rfc3339(request.created_at),
        decided_at: request.decided_at.map(rfc3339),
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CancellationRequestList {
    pub items: Vec<CancellationRequestBody>,
    pub next_cursor: Option<String>,
}

/// `POST /orders/{id}/cancellation_requests` and `POST /cancellation_requests/{id}/reject`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestReasonBody {
    pub reason: Option<String>,
}

cancel_request! {
    /// `POST /cancellation_requests/{id}/accept`: the cancel options; `reason` and `refund_method` are required (Q2).
    pub struct AcceptRequestBody {}
}

pub fn history_body(entry: &HistoryEntry) -> HistoryEntryBody {
    HistoryEntryBody {
        at: rfc3339(entry.at),
        kind: entry.kind.to_string(),
        actor: entry.actor.clone(),
        message: entry.message.clone(),
        data: entry
            .data
            .iter()
            .map(|(key, value)| (key.to_string(), Value::from(value.as_ref())))
            .collect(),
    }
}

pub fn channel_body(channel: &rescind_store::Channel) -> ChannelBody {
    ChannelBody {
        id: channel.id.clone(),
        kind: channel.kind.as_str().to_owned(),
        name: channel.name.clone(),
        base_url: channel.base_url.clone(),
        cancel_sync: channel.cancel_sync,
        created_at: rfc3339(channel.created_at),
    }
}

pub fn settings_body(settings: &rescind_store::Settings) -> SettingsBody {
    SettingsBody {
        customer_cancellation_requests: settings.customer_cancellation_requests,
        inventory_push_interval_s: settings.inventory_push_interval_s,
    }
}

// ---- webhooks and events (B4) ----

/// `POST /webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where events are posted: an `http://` or `https://` URL.
    pub url: Option<String>,
    /// The event types to send, e.g. `["order.cancelled", "refund.created"]`.
    #[schema(schema_with = event_types_schema)]
    pub events: Option<Vec<String>>,
}

fn event_types_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(enum_schema(rescind_domain::EventType::names()))
        .build()
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WebhookBody {
    pub id: String,
    pub url: String,
    #[schema(schema_with = event_types_schema)]
    pub events: Vec<String>,
    /// Signs every delivery (`X-Rescind-Signature`); in the answer to the creation only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<String>,
    pub active: bool,
    pub created_at: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookBody>,
}

pub fn webhook_body(webhook: &rescind_store::Webhook, with_secret: bool) -> WebhookBody {
    WebhookBody {
        id: webhook.id.clone(),
        url: webhook.url.clone(),
        events: webhook.events.iter().map(|event| event.as_str().to_owned()).collect(),
        secret: with_secret.then(|| webhook.secret.clone()),
        active: webhook.active,
        created_at: rfc3339(webhook.created_at),
    }
}

/// One event on its way to one webhook, with what became of its attempts.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct DeliveryBody {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    #[schema(schema_with = event_type_schema)]
    pub event_type: String,
    pub order_id: Option<String>,
    /// `pending`, `delivered` or `failed` (every attempt failed; a replay starts again).
    #[schema(schema_with = delivery_status_schema)]
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    /// The receiver's last HTTP status; null when it could not be reached.
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

fn event_type_schema() -> Object {
    enum_schema(rescind_domain::EventType::names())
}

fn delivery_status_schema() -> Object {
    enum_schema(
        rescind_store::DeliveryStatus::ALL
            .iter()
            .map(|status| status.as_str())
            .collect(),
    )
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryBody>,
    pub next_cursor: Option<String>,
}

pub fn delivery_body(delivery: &rescind_store::Delivery) -> DeliveryBody {
    DeliveryBody {
        id: delivery.id.clone(),
        webhook_id: delivery.webhook_id.clone(),
        event_id: delivery.event_id.clone(),
        event_type: delivery.event_type.clone(),
        order_id: delivery.order_id.clone(),
        status: delivery.status.as_str().to_owned(),
        attempts: delivery.attempts,
        next_attempt_at: (delivery.status == rescind_store::DeliveryStatus::Pending)
            .then(|| rfc3339(delivery.next_attempt_at)),
        last_status_code: delivery.last_status_code,
        last_error: delivery.last_error.clone(),
        created_at: rfc3339(delivery.created_at),
        delivered_at: delivery.delivered_at.map(rfc3339),
    }
}

/// An event as webhooks and the event stream carry it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct EventBody {
    pub id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = event_type_schema)]
    pub event_type: String,
    pub created_at: String,
    pub shop_id: String,
    /// The event's place among all events: increasing, with gaps (not every number is an event's), and
    /// an order's events in the order they happened.
    pub sequence: i64,
    /// The order (`order_id`, `order_number`, `channel_order_id`, `order_status`) and what happened
    /// (`message`, `actor`, `data`).
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<EventBody>,
    /// Pass as `after` for the events that follow; null when there are none yet.
    pub next_after: Option<i64>,
}
