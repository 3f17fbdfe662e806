//! `rescind-sim`: simulators of the external systems rescind talks to, speaking their wire formats,
//! with fault injection and ledgers that tests read to count effects (refunds, cancels).
//!
//! The payment provider (Stripe's API shape) under `/v1/…`, and the sales channels Shopify, Rakuten,
//! Yahoo!ショッピング, Amazon and Shoplazza under their own paths (see [`channels`]), and the OpenLogi
//! warehouse under `/api` (see [`openlogi`]). The control API is under `/_sim/`:
//! `PUT /_sim/faults/{endpoint}`, `DELETE /_sim/faults`, `GET /_sim/ledger`, `POST /_sim/reset`, and
//! `POST /_sim/payment_intents` to create payments for a test.

pub mod channels;
pub mod faults;
pub mod openlogi;
pub mod stripe;

use axum::extract::{Path, State};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use faults::{FaultConfig, Faults};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// The secret key the simulated Stripe account accepts unless told otherwise.
pub const DEFAULT_SECRET_KEY: &str = "sk_test_rescind";

/// Credentials the simulated channel `kind` accepts; `None` for a channel it does not simulate.
pub fn channel_credentials(kind: &str) -> Option<Value> {
    Some(match kind {
        "shopify" => json!({"access_token": "shpat_test", "webhook_secret": "shopify-secret"}),
        "rakuten" => json!({"service_secret": "SP000000_secret", "license_key": "license"}),
        "yahoo" => json!({"access_token": "yahoo-token", "seller_id": "rescind-store"}),
        "amazon" => {
            json!({"access_token": "Atza|test", "merchant_id": "A2EUQ1WTGCTBG2", "marketplace_id": "A1VC38T7YXB528"})
        }
        "shoplazza" => json!({"access_token": "shoplazza-token"}),
        _ => return None,
    })
}

/// Everything the simulators remember.
#[derive(Debug, Default)]
pub struct World {
    pub stripe: stripe::Account,
    pub channels: BTreeMap<&'static str, channels::Marketplace>,
    pub feeds: channels::Feeds,
    pub openlogi: openlogi::Warehouse,
    pub faults: Faults,
}

impl World {
    /// The simulated marketplace `name` (one of [`channels::CHANNELS`]).
    pub fn channel(&mut self, name: &'static str) -> &mut channels::Marketplace {
        self.channels.entry(name).or_default()
    }
}

/// Shared simulator state.
#[derive(Clone, Debug)]
pub struct Sim {
    pub world: Arc<Mutex<World>>,
    pub secret_key: String,
}

impl Sim {
    pub fn new(secret_key: &str) -> Self {
        Sim {
            world: Arc::new(Mutex::new(World::default())),
            secret_key: secret_key.to_owned(),
        }
    }

    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("the simulator's state is not poisoned")
    }
}

/// Every simulated API and the control API.
pub fn router(sim: Sim) -> Router {
    Router::new()
        .merge(stripe::router())
        .merge(channels::router())
        .merge(openlogi::router())
        .route("/_sim/faults", delete(clear_faults).get(list_faults))
        .route("/_sim/faults/{endpoint}", put(set_faults))
        .route("/_sim/ledger", get(ledger))
        .route("/_sim/reset", post(reset))
        .with_state(sim)
}

/// Serves the simulators until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Sim,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Starts the simulators on `127.0.0.1:0` in this process; for tests.
pub async fn spawn() -> (std::net::SocketAddr, Sim) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let address = listener.local_addr().expect("address");
    let sim = Sim::new(DEFAULT_SECRET_KEY);
    let served = sim.clone();
    tokio::spawn(async move { serve(listener, served, std::future::pending()).await });
    (address, sim)
}

async fn set_faults(
    State(sim): State<Sim>,
    Path(endpoint): Path<String>,
    Json(config): Json<FaultConfig>,
) -> Json<Value> {
    sim.world().faults.set(&endpoint, config);
    Json(json!({"endpoint": endpoint, "set": true}))
}

async fn clear_faults(State(sim): State<Sim>) -> Json<Value> {
    sim.world().faults.clear();
    Json(json!({"cleared": true}))
}

/// Each endpoint's fault settings, and how many requests got a fault (`injected`).
async fn list_faults(State(sim): State<Sim>) -> Json<Value> {
    let world = sim.world();
    let injected = world.faults.injected();
    let mut listed = json!(world.faults.configs());
    for (endpoint, count) in injected {
        listed[&endpoint]["injected"] = json!(count);
    }
    Json(listed)
}

async fn ledger(State(sim): State<Sim>) -> Json<Value> {
    let world = sim.world();
    let mut ledger = json!({"stripe": world.stripe.ledger(), "openlogi": world.openlogi.ledger()});
    for name in channels::CHANNELS {
        ledger[name] = world
            .channels
            .get(name)
            .map(channels::Marketplace::ledger)
            .unwrap_or_else(|| channels::Marketplace::default().ledger());
    }
    Json(ledger)
}

async fn reset(State(sim): State<Sim>) -> Json<Value> {
    *sim.world() = World::default();
    Json(json!({"reset": true}))
}
