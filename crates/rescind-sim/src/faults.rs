//! Fault injection, per endpoint (`/_sim/faults/{endpoint}`): errors without effect, refusals,
//! latency, and timeouts after the effect — the failure that makes idempotency matter.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// The faults of one endpoint. Rates are probabilities from 0 to 1, drawn per request.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Answer with `error_status` and do nothing.
    pub error_rate: f64,
    /// The status of those errors (default 503).
    pub error_status: Option<u16>,
    /// Refuse with a business error (a declined card) and do nothing.
    pub refuse_rate: f64,
    /// Apply the effect, then answer only after `hang_ms`: the caller times out not knowing.
    pub timeout_after_effect_rate: f64,
    /// How long a timed-out answer hangs (default 5000 ms).
    pub hang_ms: Option<u64>,
    /// Added before every answer.
    pub latency_ms: u64,
    /// Seeds this endpoint's draws so a run can be repeated.
    pub seed: Option<u64>,
    /// The first this many requests answer with `error_status` and do nothing, whatever the rates.
    pub fail_first: u32,
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Proceed,
    Error(u16),
    Refuse,
    /// Apply, then hang for this long before answering.
    ApplyThenHang(Duration),
}

#[derive(Debug)]
struct EndpointFaults {
    config: FaultConfig,
    random: StdRng,
    /// Requests seen since the faults were set.
    seen: u32,
    /// Of those, the ones given a fault (an error, a refusal or a hang).
    injected: u32,
}

/// The fault settings of every endpoint.
#[derive(Debug, Default)]
pub struct Faults {
    endpoints: HashMap<String, EndpointFaults>,
}

impl Faults {
    pub fn set(&mut self, endpoint: &str, config: FaultConfig) {
        let random = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        self.endpoints.insert(
            endpoint.to_owned(),
            EndpointFaults {
                config,
                random,
                seen: 0,
                injected: 0,
            },
        );
    }

    pub fn clear(&mut self) {
        self.endpoints.clear();
    }

    pub fn configs(&self) -> HashMap<String, FaultConfig> {
        self.endpoints
            .iter()
            .map(|(name, faults)| (name.clone(), faults.config.clone()))
            .collect()
    }

    /// How many requests of each endpoint got a fault since its faults were set.
    pub fn injected(&self) -> HashMap<String, u32> {
        self.endpoints
            .iter()
            .map(|(name, faults)| (name.clone(), faults.injected))
            .collect()
    }

    /// Draws the fate of a request to `endpoint`, and the latency to add before answering.
    pub fn decide(&mut self, endpoint: &str) -> (Decision, Duration) {
        let Some(faults) = self.endpoints.get_mut(endpoint) else {
            return (Decision::Proceed, Duration::ZERO);
        };
        faults.seen += 1;
        let config = &faults.config;
        let latency = Duration::from_millis(config.latency_ms);
        if faults.seen <= config.fail_first {
            faults.injected += 1;
            return (Decision::Error(config.error_status.unwrap_or(503)), latency);
        }
        let draw: f64 = faults.random.gen();
        let decision = if draw < config.error_rate {
            Decision::Error(config.error_status.unwrap_or(503))
        } else if draw < config.error_rate + config.refuse_rate {
            Decision::Refuse
        } else if draw < config.error_rate + config.refuse_rate + config.timeout_after_effect_rate {
            Decision::ApplyThenHang(Duration::from_millis(config.hang_ms.unwrap_or(5000)))
        } else {
            Decision::Proceed
        };
        if decision != Decision::Proceed {
            faults.injected += 1;
        }
        (decision, latency)
    }
}
