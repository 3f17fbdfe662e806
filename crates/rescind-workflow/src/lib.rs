//! rescind's durable workflow (W2, W7): a worker in the rescind process claims due steps under a
//! lease, makes the step's external call with the step's idempotency key, records the outcome with
//! the order in one transaction, and schedules a retry with capped, jittered backoff — or puts the
//! cancellation on the needs-attention list. Leases keep two workers (or two processes) off the same
//! step; a worker that dies leaves its steps to the others once the lease expires.

use anyhow::Result;
use rescind_connectors::payments::PaymentConnector;
use rescind_connectors::CallError;
use rescind_domain::{
    pending_work, record_step_outcome, CancellationStatus, Order, PaymentAction, PaymentCall, PendingWork, RetryPolicy,
    StaleStep, StepKind, StepOutcome, Timestamp,
};
use rescind_store::{new_id, now, ChangeError, Job, RandomIds, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};

/// How the worker behaves.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    pub retry: RetryPolicy,
    /// How long a claimed step is the worker's alone. Longer than `partner_timeout`, so a live worker
    /// never loses a step it is still calling about.
    pub lease: Duration,
    /// Steps run at once by one process.
    pub concurrency: usize,
    /// The longest wait for a partner's answer before its outcome counts as unknown.
    pub partner_timeout: Duration,
    /// The longest sleep between two looks for due steps when nothing wakes the worker (other
    /// processes may schedule steps too).
    pub idle_poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(30),
            concurrency: 16,
            partner_timeout: Duration::from_secs(10),
            idle_poll: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Default)]
struct Signals {
    /// A step was scheduled: look for due steps now.
    wake: Notify,
    /// A step's outcome was recorded: waiting requests look again.
    settled: Notify,
}

/// The handle requests use to wake the worker and wait for cancellations to settle.
#[derive(Clone, Debug, Default)]
pub struct Workflow {
    signals: Arc<Signals>,
}

/// How often a waiting request looks again when no outcome of this process woke it (another process
/// may have recorded it).
const SETTLE_POLL: Duration = Duration::from_millis(200);

impl Workflow {
    pub fn new() -> Self {
        Workflow::default()
    }

    /// Tells the worker a step is due.
    pub fn wake(&self) {
        self.signals.wake.notify_one();
    }

    /// Waits until none of `order_ids` has a cancellation still processing, or `timeout` passes.
    pub async fn wait_until_settled(
        &self,
        store: &Store,
        shop_id: &str,
        order_ids: &[String],
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.signals.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut processing = false;
            for order_id in order_ids {
                if store
                    .order(shop_id, order_id)
                    .await?
                    .as_ref()
                    .is_some_and(is_processing)
                {
                    processing = true;
                    break;
                }
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !processing || remaining.is_zero() {
                return Ok(());
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(remaining.min(SETTLE_POLL)) => {}
            }
        }
    }
}

fn is_processing(order: &Order) -> bool {
    order
        .cancellation
        .as_ref()
        .is_some_and(|cancellation| cancellation.status == CancellationStatus::Processing)
}

/// Runs the worker until `shutdown` turns true, then lets the steps in flight finish.
pub async fn run_worker(store: Store, workflow: Workflow, config: WorkerConfig, mut shutdown: watch::Receiver<bool>) {
    let owner = new_id("worker");
    if store.backend_name() == "sqlite" {
        // One process owns an SQLite database: the leases of the process before this one are void.
        match store.release_all_leases().await {
            Ok(released) if released > 0 => {
                tracing::info!(released, "resuming steps left by the previous run")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "failed to release old leases")
            }
        }
    }
    let http = rescind_connectors::http_client(config.partner_timeout);
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let signals = workflow.signals.clone();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let available = permits.available_permits();
        let claimed = if available == 0 {
            Vec::new()
        } else {
            let lease_until = Timestamp::from_unix_micros(now().unix_micros() + config.lease.as_micros() as i64);
            store
                .claim_jobs(&owner, lease_until, available as u32)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(error = format!("{error:#}"), "failed to claim due steps");
                    Vec::new()
                })
        };
        let claimed_all_it_could = available > 0 && claimed.len() == available;
        for job in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (store, http, owner, signals) = (store.clone(), http.clone(), owner.clone(), signals.clone());
            tokio::spawn(async move {
                if let Err(error) = execute(&store, &http, &config, &owner, &job).await {
                    tracing::warn!(error = format!("{error:#}"), cancellation_id = %job.cancellation_id, "step failed unexpectedly; it will run again when its lease expires");
                }
                drop(permit);
                signals.settled.notify_waiters();
                signals.wake.notify_one();
            });
        }
        if claimed_all_it_could {
            continue;
        }
        let sleep = match store.next_job_due_at().await {
            Ok(Some(due_at)) => {
                let until_due = due_at.unix_micros() - now().unix_micros();
                Duration::from_micros(until_due.max(0) as u64).min(config.idle_poll)
            }
            _ => config.idle_poll,
        };
        tokio::select! {
            () = signals.wake.notified() => {}
            () = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
        }
    }
    // Let the steps in flight record their outcomes.
    let _ = permits.acquire_many(config.concurrency.max(1) as u32).await;
}

/// Runs the pending step of one claimed cancellation and records its outcome.
async fn execute(store: &Store, http: &reqwest::Client, config: &WorkerConfig, owner: &str, job: &Job) -> Result<()> {
    let Some(order) = store.order(&job.shop_id, &job.order_id).await? else {
        return store.finish_job(&job.cancellation_id, owner).await;
    };
    let outcome = match pending_work(&order) {
        None => return store.finish_job(&job.cancellation_id, owner).await,
        Some(PendingWork::NothingOwed) => StepOutcome::NothingOwed,
        Some(PendingWork::Payment(call)) => payment_outcome(store, http, config, &order, &call).await?,
    };
    let recorded = store
        .change_order(&job.shop_id, &job.order_id, |current| {
            record_step_outcome(current, StepKind::Refund, outcome, &mut RandomIds, now())
        })
        .await;
    match recorded {
        Ok(_) => Ok(()),
        Err(ChangeError::Refused(StaleStep) | ChangeError::NotFound) => {
            store.finish_job(&job.cancellation_id, owner).await
        }
        Err(ChangeError::Store(error)) => Err(error),
    }
}

/// Makes the payment provider call of a refund step and classifies what came of it.
async fn payment_outcome(
    store: &Store,
    http: &reqwest::Client,
    config: &WorkerConfig,
    order: &Order,
    call: &PaymentCall,
) -> Result<StepOutcome> {
    let attempts = order
        .cancellation
        .as_ref()
        .and_then(|cancellation| cancellation.step(StepKind::Refund))
        .map_or(0, |step| step.attempts);
    let Some(provider) = store.payment_provider(&order.shop_id, &call.provider_id).await? else {
        return Ok(StepOutcome::Refused {
            message: format!("the payment provider {} no longer exists", call.provider_id),
        });
    };
    let called = match PaymentConnector::new(
        provider.kind,
        &provider.base_url,
        provider.credentials.as_deref(),
        http.clone(),
    ) {
        Err(error) => Err(error),
        Ok(connector) => match call.action {
            PaymentAction::Refund { amount } => connector
                .refund(
                    &call.reference,
                    amount,
                    call.currency,
                    &call.idempotency_key,
                    call.earlier_attempts,
                )
                .await
                .map(|refund| StepOutcome::Refunded {
                    amount: refund.amount,
                    reference: refund.id,
                }),
            PaymentAction::Void => connector
                .void(&call.reference, &call.idempotency_key)
                .await
                .map(|()| StepOutcome::Voided),
        },
    };
    Ok(match called {
        Ok(outcome) => outcome,
        Err(CallError::Refused { message } | CallError::Misconfigured { message }) => StepOutcome::Refused { message },
        Err(error @ (CallError::Transient { .. } | CallError::Unknown { .. })) => {
            let retry_at = config.retry.retry_at(attempts + 1, rand::random::<f64>(), now());
            StepOutcome::Failed {
                message: error.to_string(),
                retry_at,
            }
        }
    })
}
