//! The OpenAPI 3.1 document, generated from the handlers' annotations (`GET /api/v1/openapi.json`).

use crate::routes;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "rescind", description = "Cancel e-commerce orders correctly everywhere at once."),
    paths(
        routes::admin::create_shop,
        routes::admin::create_token,
        routes::settings::get_settings,
        routes::settings::update_settings,
        routes::channels::create_channel,
        routes::channels::list_channels,
        routes::channels::get_channel,
        routes::channels::cancel_reasons,
        routes::channels::poll,
        routes::webhooks::receive,
        routes::orders::import_order,
        routes::orders::list_orders,
        routes::orders::get_order,
        routes::orders::modify,
        routes::orders::order_history,
        routes::cancel::cancel_order,
        routes::cancel::bulk_cancel,
        routes::cancel::record_refund,
        routes::cancel::undo_cancel,
        routes::cancel::list_cancellations,
        routes::cancel::retry,
        routes::sync_history::list,
        routes::subscriptions::create_webhook,
        routes::subscriptions::list_webhooks,
        routes::subscriptions::get_webhook,
        routes::subscriptions::delete_webhook,
        routes::subscriptions::list_deliveries,
        routes::subscriptions::replay_delivery,
        routes::subscriptions::list_events,
        routes::inventory::list_stock,
        routes::inventory::get_stock,
        routes::inventory::set_stock,
        routes::inventory::adjust_stock,
        routes::inventory::get_listings,
        routes::inventory::set_listings,
        routes::requests::create_request,
        routes::requests::list_requests,
        routes::requests::accept,
        routes::requests::reject,
        routes::warehouses::create_warehouse,
        routes::warehouses::list_warehouses,
        routes::warehouses::get_warehouse,
        routes::warehouses::receive_event,
        routes::payment_providers::create_payment_provider,
        routes::payment_providers::list_payment_providers,
        routes::payment_providers::get_payment_provider,
        routes::ops::healthz,
        routes::ops::metrics,
        routes::ops::openapi_document,
    ),
    components(schemas(crate::error::ErrorBody, crate::wire::DryRunBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        optional_empty_bodies(&mut document);
        document.to_string()
    })
}

/// An empty body counts as `{}` (`body::parse_json`): where the body's schema requires no field,
/// the body itself is documented as optional.
fn optional_empty_bodies(document: &mut serde_json::Value) {
    let schemas = document["components"]["schemas"].clone();
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(|path| path.as_object_mut())
        .flat_map(|path| path.values_mut())
    {
        let body = &mut operation["requestBody"];
        let Some(reference) = body["content"]["application/json"]["schema"]["$ref"].as_str() else {
            continue;
        };
        let name = reference.trim_start_matches("#/components/schemas/");
        let requires_nothing = schemas[name]["required"].as_array().is_none_or(Vec::is_empty);
        if requires_nothing {
            body["required"] = serde_json::Value::Bool(false);
        }
    }
}
