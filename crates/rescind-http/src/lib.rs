//! rescind's HTTP API (shared/API.md): routers per resource, authentication, idempotency, the error
//! type, metrics and the OpenAPI document generated from the handlers.

pub mod auth;
pub mod body;
pub mod console;
pub mod demo;
pub mod error;
pub mod idempotency;
pub mod input;
pub mod metrics;
pub mod openapi;
mod routes;
pub mod wire;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use rescind_store::Store;
use rescind_workflow::{WorkerConfig, Workflow};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How often stored idempotent responses, events and deliveries past their retention are deleted.
const IDEMPOTENCY_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// How the service behaves; each value has a flag of `rescind serve`.
#[derive(Clone, Copy, Debug)]
pub struct ServiceSettings {
    /// How long a cancel request waits for its steps before answering 202 `processing`.
    pub cancel_wait: Duration,
    pub worker: WorkerConfig,
    /// How often marketplaces are asked which orders they cancelled (H3); `None` never.
    pub channel_poll_interval: Option<Duration>,
    /// How events are delivered to webhooks (B4).
    pub webhooks: rescind_workflow::webhooks::DeliveryConfig,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            cancel_wait: Duration::from_secs(5),
            worker: WorkerConfig::default(),
            channel_poll_interval: Some(Duration::from_secs(300)),
            webhooks: rescind_workflow::webhooks::DeliveryConfig::default(),
        }
    }
}

/// What every handler shares: one allocation, so the clone each request's extractors and middleware
/// make is one reference count (it was every field's — the store's pools and queue, the workflow, the
/// HTTP client, the admin token's hash — about 3 % of an own-store cancel's server CPU). Read through
/// [`Deref`](std::ops::Deref); changed (before it is shared) through `DerefMut`, which copies it when
/// it already is.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }
}

/// The parts of [`AppState`].
#[derive(Clone, Debug)]
pub struct Shared {
    pub store: Store,
    pub metrics: Arc<metrics::Metrics>,
    /// SHA-256 of `RESCIND_ADMIN_TOKEN`; `None` disables platform administration.
    pub admin_token_hash: Option<String>,
    pub workflow: Workflow,
    pub settings: ServiceSettings,
    /// For calls a request makes itself (a re-authorization on undo).
    pub http: reqwest::Client,
    /// Shop tokens recently read from the database.
    pub tokens: Arc<auth::TokenCache>,
    /// Where events are published besides webhooks (`--nats-url`); `None` keeps them to webhooks.
    pub event_stream: Option<rescind_workflow::nats::StreamConfig>,
}

impl AppState {
    pub fn new(store: Store, admin_token: Option<&str>, settings: ServiceSettings) -> Self {
        AppState(Arc::new(Shared {
            store,
            metrics: Arc::new(metrics::Metrics::default()),
            admin_token_hash: admin_token.filter(|token| !token.is_empty()).map(auth::hash_secret),
            workflow: Workflow::new(),
            settings,
            http: rescind_connectors::http_client(settings.worker.partner_timeout),
            tokens: Arc::default(),
            event_stream: None,
        }))
    }

    /// Publishes every event to this NATS JetStream stream too.
    pub fn with_event_stream(mut self, stream: rescind_workflow::nats::StreamConfig) -> Self {
        self.event_stream = Some(stream);
        self
    }
}

/// The whole application: `/api/v1/…` behind authentication and idempotency, the operator console at
/// `/console`, plus the open `/healthz`, `/metrics` and `/api/v1/openapi.json`.
pub fn router(state: AppState) -> Router {
    // Each layer clones the routes below it and boxes a future per request, so every route has one:
    // the API's its metrics, body limits, token and idempotency key; the rest their metrics and body
    // limits. The API's routes are merged after the others' layer.
    // A wrong method on an API path is answered inside that layer: 401 without a token, else 405.
    let api = api_routes("/api/v1")
        .method_not_allowed_fallback(routes::ops::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), auth::authenticate));
    // The console calls the same routes in process, having authenticated the operator itself.
    let console = console::router(console::ConsoleState {
        app: state.clone(),
        api: api_routes("")
            .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
            .with_state(state.clone()),
    });
    Router::new()
        .nest_service("/console", console)
        .route("/api/v1/openapi.json", get(routes::ops::openapi_document))
        .route(
            "/api/v1/channels/{channel_id}/webhooks",
            post(routes::webhooks::receive),
        )
        .route(
            "/api/v1/warehouses/{warehouse_id}/events",
            post(routes::warehouses::receive_event),
        )
        .route("/healthz", get(routes::ops::healthz))
        .route("/metrics", get(routes::ops::metrics))
        .fallback(routes::ops::not_found)
        .method_not_allowed_fallback(routes::ops::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .merge(api)
        .with_state(state)
}

/// Every route of `/api/v1`, without its layers, each path under `prefix` (`/api/v1` served, none for
/// the console's in-process calls): registered whole rather than nested, as a nested router strips its
/// prefix from every request's path (a new URI) and looks the route up a second time.
fn api_routes(prefix: &str) -> Router<AppState> {
    let at = |path: &str| format!("{prefix}{path}");
    Router::new()
        .route(&at("/shops"), post(routes::admin::create_shop))
        .route(&at("/shops/{shop_id}/tokens"), post(routes::admin::create_token))
        .route(
            &at("/settings"),
            get(routes::settings::get_settings).patch(routes::settings::update_settings),
        )
        .route(
            &at("/channels"),
            post(routes::channels::create_channel).get(routes::channels::list_channels),
        )
        .route(&at("/channels/{channel_id}"), get(routes::channels::get_channel))
        .route(
            &at("/channels/{channel_id}/cancel_reasons"),
            get(routes::channels::cancel_reasons),
        )
        .route(&at("/channels/{channel_id}/poll"), post(routes::channels::poll))
        .route(
            &at("/orders"),
            post(routes::orders::import_order).get(routes::orders::list_orders),
        )
        .route(&at("/orders/cancel"), post(routes::cancel::bulk_cancel))
        .route(
            &at("/orders/{order_id}"),
            get(routes::orders::get_order).patch(routes::orders::modify),
        )
        .route(&at("/orders/{order_id}/history"), get(routes::orders::order_history))
        .route(&at("/orders/{order_id}/cancel"), post(routes::cancel::cancel_order))
        .route(&at("/orders/{order_id}/refunds"), post(routes::cancel::record_refund))
        .route(&at("/orders/{order_id}/uncancel"), post(routes::cancel::undo_cancel))
        .route(&at("/cancellations"), get(routes::cancel::list_cancellations))
        .route(
            &at("/orders/{order_id}/cancellation_requests"),
            post(routes::requests::create_request),
        )
        .route(&at("/cancellation_requests"), get(routes::requests::list_requests))
        .route(
            &at("/cancellation_requests/{request_id}/accept"),
            post(routes::requests::accept),
        )
        .route(
            &at("/cancellation_requests/{request_id}/reject"),
            post(routes::requests::reject),
        )
        .route(&at("/sync_history"), get(routes::sync_history::list))
        .route(
            &at("/webhooks"),
            post(routes::subscriptions::create_webhook).get(routes::subscriptions::list_webhooks),
        )
        .route(
            &at("/webhooks/{webhook_id}"),
            get(routes::subscriptions::get_webhook).delete(routes::subscriptions::delete_webhook),
        )
        .route(
            &at("/webhooks/{webhook_id}/deliveries"),
            get(routes::subscriptions::list_deliveries),
        )
        .route(
            &at("/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"),
            post(routes::subscriptions::replay_delivery),
        )
        .route(&at("/events"), get(routes::subscriptions::list_events))
        .route(&at("/inventory"), get(routes::inventory::list_stock))
        .route(
            &at("/inventory/{sku}"),
            get(routes::inventory::get_stock).put(routes::inventory::set_stock),
        )
        .route(&at("/inventory/{sku}/adjust"), post(routes::inventory::adjust_stock))
        .route(
            &at("/inventory/{sku}/listings"),
            get(routes::inventory::get_listings).put(routes::inventory::set_listings),
        )
        .route(
            &at("/warehouses"),
            post(routes::warehouses::create_warehouse).get(routes::warehouses::list_warehouses),
        )
        .route(
            &at("/warehouses/{warehouse_id}"),
            get(routes::warehouses::get_warehouse),
        )
        .route(
            &at("/cancellations/{cancellation_id}/retry"),
            post(routes::cancel::retry),
        )
        .route(
            &at("/payment_providers"),
            post(routes::payment_providers::create_payment_provider)
                .get(routes::payment_providers::list_payment_providers),
        )
        .route(
            &at("/payment_providers/{provider_id}"),
            get(routes::payment_providers::get_payment_provider),
        )
}

/// Serves until `shutdown` resolves, then stops accepting, lets requests in flight and the worker's
/// steps in flight finish, and closes the database.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = state.store.clone();
    let purger = tokio::spawn({
        let store = store.clone();
        async move {
            let mut interval = tokio::time::interval(IDEMPOTENCY_PURGE_INTERVAL);
            loop {
                interval.tick().await;
                match store.purge_idempotency_keys().await {
                    Ok(deleted) if deleted > 0 => {
                        tracing::info!(deleted, "purged expired idempotency keys")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "failed to purge idempotency keys"),
                }
                match store.purge_outbox(rescind_store::now()).await {
                    Ok(deleted) if deleted > 0 => tracing::info!(deleted, "purged old events and deliveries"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "failed to purge old events"),
                }
            }
        }
    });
    let (stop_worker, worker_stopping) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(rescind_workflow::run_worker(
        store.clone(),
        state.workflow.clone(),
        state.settings.worker,
        worker_stopping,
    ));
    let poller = state.settings.channel_poll_interval.map(|interval| {
        tokio::spawn(rescind_workflow::run_poller(
            store.clone(),
            state.workflow.clone(),
            interval,
            state.http.clone(),
            stop_worker.subscribe(),
        ))
    });
    let pusher = tokio::spawn(rescind_workflow::stock_push::run_stock_pusher(
        store.clone(),
        state.http.clone(),
        stop_worker.subscribe(),
    ));
    let deliverer = tokio::spawn(rescind_workflow::webhooks::run_deliverer(
        store.clone(),
        state.settings.webhooks,
        stop_worker.subscribe(),
    ));
    let publisher = state.event_stream.clone().map(|stream| {
        tokio::spawn(rescind_workflow::nats::run_publisher(
            store.clone(),
            stream,
            stop_worker.subscribe(),
        ))
    });
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_worker.send(true);
    let _ = worker.await;
    let _ = pusher.await;
    let _ = deliverer.await;
    if let Some(publisher) = publisher {
        let _ = publisher.await;
    }
    if let Some(poller) = poller {
        let _ = poller.await;
    }
    purger.abort();
    store.close().await;
    served
}
