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
    DOCUMENT.get_or_init(|| ApiDoc::openapi().to_json().expect("the OpenAPI document serializes"))
}
