//! rescind's durable workflow (W2, W7): a worker in the rescind process claims due steps under a
//! lease, makes the step's external call with the step's idempotency key, records the outcome with
//! the order in one transaction, and schedules a retry with capped, jittered backoff — or puts the
//! cancellation on the needs-attention list. Leases keep two workers (or two processes) off the same
//! step; a worker that dies leaves its steps to the others once the lease expires.

pub mod nats;
pub mod stock_push;
pub mod webhooks;

use anyhow::Result;
use rescind_connectors::channels::ChannelConnector;
use rescind_connectors::payments::PaymentConnector;
use rescind_connectors::warehouses::openlogi::{NewShipment, OpenLogi, Recipient};
use rescind_connectors::CallError;
use rescind_domain::workflow::{record_outbound, OutboundCall, OutboundOutcome, WarehouseCall};
use rescind_domain::{
    pending_work, record_step_outcome, record_step_outcomes, CancellationStatus, ChannelCall, Order, OrderChange,
    OutboundStatus, PaymentAction, PaymentCall, PendingWork, RetryPolicy, StaleStep, StepKind, StepOutcome, Timestamp,
    WorkflowSchedule,
};
use rescind_store::{new_id, now, ChangeError, Job, Lease, RandomIds, Store};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

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
    /// Who waits on which order's outcomes ([`Workflow::watch`]).
    watchers: std::sync::Mutex<Watchers>,
}

/// The watches of the requests waiting, by the order each waits on. An outcome goes to the watches of
/// its order alone: a broadcast to every watch woke each waiting request for every other request's
/// outcome (64 waiting, 64 wakes and copies per outcome).
#[derive(Debug, Default)]
struct Watchers {
    by_order: HashMap<String, Vec<(u64, mpsc::UnboundedSender<Settled>)>>,
    last_id: u64,
}

impl Signals {
    /// A step's outcome was just recorded for the order: `order` tells how it left the order, so a
    /// request waiting on it needs no look at the order to know how it stands, nor a read to answer
    /// with it. Nobody may be waiting (then `order` is not called): that is not an error.
    fn settled(&self, order_id: &str, order: impl FnOnce() -> Option<Arc<Order>>) {
        let watches: Vec<mpsc::UnboundedSender<Settled>> = {
            let watchers = self.watchers.lock().expect("the watchers' lock");
            let Some(watches) = watchers.by_order.get(order_id) else {
                return;
            };
            watches.iter().map(|(_, watch)| watch.clone()).collect()
        };
        // Built once the lock is let go: it may be a copy of the whole order.
        let settled = Settled {
            order_id: order_id.to_owned(),
            order: order(),
        };
        for watch in watches {
            let _ = watch.send(settled.clone());
        }
    }
}

/// A step's outcome recorded for an order.
#[derive(Clone, Debug)]
struct Settled {
    order_id: String,
    /// The order as the recorded outcome left it; `None` when the worker does not know (the step
    /// failed unexpectedly, or nothing was recorded), so a waiting request looks.
    order: Option<Arc<Order>>,
}

/// The handle requests use to wake the worker, hand it their orders' first steps and wait for
/// cancellations to settle.
#[derive(Clone, Debug, Default)]
pub struct Workflow {
    signals: Arc<Signals>,
    /// This process's worker while it runs: what a request needs to hand it a job directly.
    local: Arc<std::sync::Mutex<Option<Arc<LocalWorker>>>>,
}

/// This process's running worker, as the requests see it.
#[derive(Debug)]
struct LocalWorker {
    owner: String,
    config: WorkerConfig,
    http: reqwest::Client,
    /// The worker's places for steps at once ([`WorkerConfig::concurrency`]), shared by the claimed
    /// jobs and the handed ones.
    permits: Arc<Semaphore>,
    /// The loop last found every place taken (or took as many due jobs as it had places): due jobs
    /// may be waiting for a place, so a finished job wakes it.
    short_of_places: std::sync::atomic::AtomicBool,
}

/// A place in this process's worker, taken before a change is written ([`Workflow::reserve`]): the
/// change schedules its order's job leased to the worker ([`Reservation::lease`]), and once it is
/// committed [`Reservation::hand_off`] gives the worker the job with the order as the change left it.
/// The worker then needs neither to claim the job (a write transaction of its own) nor to read the
/// order. Dropped unused, the place is free again; a job written leased but never handed (the
/// process stopped in between) is claimed by any worker once the lease expires, as any step whose
/// worker died.
pub struct Reservation {
    worker: Arc<LocalWorker>,
    signals: Arc<Signals>,
    permit: tokio::sync::OwnedSemaphorePermit,
    lease: Lease,
}

impl Reservation {
    /// The lease the change offers to keep for the worker: kept when it schedules the first step
    /// within [`CONTINUE_WITHIN`].
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }

    /// Runs the job of `order`, which a change committed leased to this reservation's worker
    /// ([`Reservation::lease`], kept) with its next step due at `due_at`: from the order as that
    /// change left it, or — when the step is not due yet — as it stands once it is.
    pub fn hand_off(self, store: Store, order: Order, due_at: Timestamp) {
        let Reservation {
            worker,
            signals,
            permit,
            lease,
        } = self;
        let job = Job {
            shop_id: order.shop_id.clone(),
            order_id: order.id.clone(),
        };
        tokio::spawn(async move {
            let wait = due_at.unix_micros() - now().unix_micros();
            let known = if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait as u64)).await;
                // Another change may have come meanwhile: the worker reads the order.
                None
            } else {
                Some(order)
            };
            run_job(store, worker, signals, job, known, lease.until, permit).await
        });
    }
}

/// How often a waiting request looks again when no outcome of this process woke it (another process
/// may have recorded it).
const SETTLE_POLL: Duration = Duration::from_millis(200);

impl Workflow {
    pub fn new() -> Self {
        Workflow::default()
    }

    /// A place in this process's worker for an order's first step, taken before the change that
    /// schedules it; `None` when no worker runs in this process or every place is taken (the job is
    /// then claimed as usual).
    pub fn reserve(&self) -> Option<Reservation> {
        let worker = self
            .local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()?;
        let permit = worker.permits.clone().try_acquire_owned().ok()?;
        let started = now();
        let lease = Lease {
            owner: worker.owner.clone(),
            until: later(started, worker.config.lease),
            keep_if_due_by: later(started, CONTINUE_WITHIN),
        };
        Some(Reservation {
            worker,
            signals: self.signals.clone(),
            permit,
            lease,
        })
    }

    /// Makes `worker` the one requests hand jobs to, or none.
    fn set_local(&self, worker: Option<Arc<LocalWorker>>) {
        *self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = worker;
    }

    /// Tells the worker a step is due.
    pub fn wake(&self) {
        self.signals.wake.notify_one();
    }

    /// Waits until none of `order_ids` has a cancellation still processing, or `timeout` passes.
    /// Answers the orders this process's worker settled meanwhile, as its last outcome left them
    /// (the others, the caller reads).
    pub async fn wait_until_settled(
        &self,
        store: &Store,
        shop_id: &str,
        order_ids: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, Arc<Order>>> {
        // Subscribed before the first look, so an outcome recorded meanwhile is not missed.
        let watch = self.watch(order_ids);
        let waiting = store.processing_orders(shop_id, order_ids).await?;
        self.wait_until_settled_watched(watch, store, shop_id, waiting, timeout)
            .await
    }

    /// Hears the worker's outcomes for these orders from now on. Taken before a change is written, it
    /// hears every outcome of that change's steps, so the wait needs no first look at the store
    /// ([`Workflow::wait_until_settled_watched`]).
    pub fn watch<S: AsRef<str>>(&self, order_ids: &[S]) -> Watch {
        let (sender, outcomes) = mpsc::unbounded_channel();
        let mut watchers = self.signals.watchers.lock().expect("the watchers' lock");
        watchers.last_id += 1;
        let id = watchers.last_id;
        for order_id in order_ids {
            watchers
                .by_order
                .entry(order_id.as_ref().to_owned())
                .or_default()
                .push((id, sender.clone()));
        }
        Watch {
            outcomes,
            signals: self.signals.clone(),
            id,
            order_ids: order_ids.iter().map(|order_id| order_id.as_ref().to_owned()).collect(),
        }
    }

    /// [`Workflow::wait_until_settled`] for orders the caller knows are processing — from the change
    /// it wrote after taking `watch` — without reading them first.
    pub async fn wait_until_settled_watched(
        &self,
        watch: Watch,
        store: &Store,
        shop_id: &str,
        processing: HashSet<String>,
        timeout: Duration,
    ) -> Result<HashMap<String, Arc<Order>>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watch = watch;
        let mut waiting = processing;
        let mut known = HashMap::new();
        loop {
            let now = tokio::time::Instant::now();
            if waiting.is_empty() || now >= deadline {
                return Ok(known);
            }
            // Only an outcome of one of these orders (or having fallen behind) is worth a new look.
            let look_again_at = (now + SETTLE_POLL).min(deadline);
            loop {
                tokio::select! {
                    received = watch.outcomes.recv() => match received {
                        Some(Settled { order_id, .. }) if !waiting.contains(&order_id) => continue,
                        // The worker tells how the order stands: no need to read it.
                        Some(Settled { order: Some(order), .. }) if is_processing(&order) => continue,
                        Some(Settled { order_id, order: Some(order) }) => {
                            waiting.remove(&order_id);
                            known.insert(order_id, order);
                            if waiting.is_empty() {
                                return Ok(known);
                            }
                        }
                        Some(Settled { order: None, .. }) => break,
                        // Not reached while the watch is registered (it holds a sender itself).
                        None => {
                            tokio::time::sleep_until(look_again_at).await;
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(look_again_at) => break,
                }
            }
            let asked: Vec<String> = waiting.drain().collect();
            waiting = store.processing_orders(shop_id, &asked).await?;
        }
    }
}

/// A subscription to the worker's outcomes for some orders ([`Workflow::watch`]); dropped, it is
/// taken off the watchers.
pub struct Watch {
    outcomes: mpsc::UnboundedReceiver<Settled>,
    signals: Arc<Signals>,
    id: u64,
    order_ids: Vec<String>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = self.signals.watchers.lock().expect("the watchers' lock");
        for order_id in &self.order_ids {
            if let Some(watches) = watchers.by_order.get_mut(order_id) {
                watches.retain(|(id, _)| *id != self.id);
                if watches.is_empty() {
                    watchers.by_order.remove(order_id);
                }
            }
        }
    }
}

/// Whether the order's cancellation is still processing: what a wait for it waits on.
pub fn is_processing(order: &Order) -> bool {
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
    let worker = Arc::new(LocalWorker {
        owner: owner.clone(),
        config,
        http,
        permits: permits.clone(),
        short_of_places: false.into(),
    });
    workflow.set_local(Some(worker.clone()));
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Until this look's outcome is known, a job that finishes wakes the loop (no place freed
        // meanwhile goes unnoticed).
        worker.short_of_places.store(true, std::sync::atomic::Ordering::Release);
        let available = permits.available_permits();
        let lease_until = later(now(), config.lease);
        let claimed = if available == 0 {
            Vec::new()
        } else {
            store
                .claim_jobs(&owner, lease_until, available as u32)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(error = format!("{error:#}"), "failed to claim due steps");
                    Vec::new()
                })
        };
        let claimed_all_it_could = available > 0 && claimed.len() == available;
        worker.short_of_places.store(
            available == 0 || claimed_all_it_could,
            std::sync::atomic::Ordering::Release,
        );
        for job in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            tokio::spawn(run_job(
                store.clone(),
                worker.clone(),
                signals.clone(),
                job,
                None,
                lease_until,
                permit,
            ));
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
    // No request hands this worker a job any more; let the steps in flight record their outcomes.
    workflow.set_local(None);
    let _ = permits.acquire_many(config.concurrency.max(1) as u32).await;
}

/// Runs one job this worker holds until `lease_until` — claimed, or handed with the order as the
/// change that scheduled it left it (`known`) — then frees its place and tells who waits how the
/// order stands.
async fn run_job(
    store: Store,
    worker: Arc<LocalWorker>,
    signals: Arc<Signals>,
    job: Job,
    known: Option<Order>,
    lease_until: Timestamp,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let LocalWorker {
        owner, config, http, ..
    } = &*worker;
    let ran = match execute(&store, http, config, owner, &job, known, lease_until, &signals).await {
        Ok(ran) => ran,
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), order_id = %job.order_id, "step failed unexpectedly; it will run again when its lease expires");
            Ran::finished(None)
        }
    };
    drop(permit);
    signals.settled(&job.order_id, || ran.order.map(Arc::new));
    // The loop looks again only when there is something to claim: this job's next step, or the
    // due jobs it left for want of a free place (a look per finished job was a claim transaction
    // per cancellation).
    if ran.left_to_claim || worker.short_of_places.load(std::sync::atomic::Ordering::Acquire) {
        signals.wake.notify_one();
    }
}

/// How soon a cancellation's next step must fall due for the worker to go on with it itself, under
/// the lease it holds, instead of leaving it to be claimed again.
const CONTINUE_WITHIN: Duration = Duration::from_secs(1);

/// Runs the pending steps of one cancellation whose job the worker holds until `lease_until` —
/// claimed, or handed with the order as the change that scheduled it left it (`known`, so not read
/// again) — recording each outcome; answers the order as the last left it, when that is known. After
/// a step the worker goes on with the next under the lease it holds when that falls due within
/// [`CONTINUE_WITHIN`] (the store keeps the lease through the recorded outcome), so a cancellation's
/// steps cost no claim and no read each; a later step, a retry, the outbound creation and the
/// restock leave the job to be claimed as before. When an outcome leaves the next call due at once
/// (the channel's success, then the refund), the worker makes that call before writing, and writes
/// both outcomes in one change ([`goes_on_unwritten`]) — unless the call takes longer than
/// [`UNWRITTEN_HOLD_MAX`], when the earlier outcomes are written while it runs.
#[allow(clippy::too_many_arguments)]
async fn execute(
    store: &Store,
    http: &reqwest::Client,
    config: &WorkerConfig,
    owner: &str,
    job: &Job,
    known: Option<Order>,
    mut lease_until: Timestamp,
    signals: &Signals,
) -> Result<Ran> {
    let known = match known {
        Some(order) => Some(order),
        None => store.order(&job.shop_id, &job.order_id).await?,
    };
    let Some(mut order) = known else {
        store.finish_job(&job.order_id, owner).await?;
        return Ok(Ran::finished(None));
    };
    // Outcomes of calls made one after another, not written yet: the order above is as they leave it.
    let mut unwritten: Vec<(StepKind, StepOutcome, Timestamp)> = Vec::new();
    loop {
        let Some(work) = pending_work(&order) else {
            store.finish_job(&job.order_id, owner).await?;
            return Ok(Ran::finished(Some(order)));
        };
        let Some(kind) = work.step_kind() else {
            // The outbound request's creation (F1).
            let PendingWork::CreateOutbound(call) = &work else {
                unreachable!("only the creation has no step")
            };
            let outcome = create_outbound(store, http, config, &order, call).await?;
            let recorded = store
                .change_order(&job.shop_id, &job.order_id, |current| {
                    record_outbound(current, outcome, now())
                })
                .await;
            return settled(store, owner, job, recorded).await;
        };
        if let PendingWork::Restock = work {
            // The store puts the stock back and records the outcome in one transaction, exactly once.
            let restocked = store.restock(&job.shop_id, &job.order_id, record_restock).await;
            return settled(store, owner, job, restocked).await;
        }
        let attempts = order
            .cancellation
            .as_ref()
            .and_then(|cancellation| cancellation.step(kind))
            .map_or(0, |step| step.attempts);
        let call = async {
            match &work {
                PendingWork::NothingOwed => Ok(Ok(StepOutcome::NothingOwed)),
                PendingWork::CreateOutbound(_) => unreachable!("handled above"),
                PendingWork::Warehouse(call) => warehouse_call(store, http, &order, call).await,
                PendingWork::Restock => unreachable!("handled above"),
                PendingWork::Payment(call) => payment_call(store, http, &order, call).await,
                PendingWork::Channel(call) => channel_call(store, http, &order, call).await,
            }
        };
        let called = if unwritten.is_empty() {
            call.await?
        } else {
            tokio::pin!(call);
            match tokio::time::timeout(UNWRITTEN_HOLD_MAX, &mut call).await {
                Ok(called) => called?,
                Err(_) => {
                    // A slow partner: the outcomes before this call are written meanwhile, so that
                    // they are seen without waiting for it (W4: cancelled once the channel confirmed).
                    let held = std::mem::take(&mut unwritten);
                    let ((kept_until, written), called) =
                        tokio::join!(write_outcomes(store, config, owner, job, held), &mut call);
                    match written {
                        Ok((change, kept)) => {
                            if kept {
                                lease_until = kept_until;
                            }
                            signals.settled(&job.order_id, || Some(Arc::new(change.order)));
                        }
                        // Undone meanwhile, or gone: this call's outcome finds its step stale too.
                        Err(ChangeError::Refused(StaleStep) | ChangeError::NotFound) => {}
                        Err(ChangeError::Store(error)) => return Err(error),
                    }
                    called?
                }
            }
        };
        let outcome = match called {
            Ok(outcome) => outcome,
            Err(CallError::Refused { message } | CallError::Misconfigured { message }) => {
                StepOutcome::Refused { message }
            }
            Err(error @ (CallError::Transient { .. } | CallError::Unknown { .. })) => {
                let retry_at = config.retry.retry_at(attempts + 1, rand::random::<f64>(), now());
                StepOutcome::Failed {
                    message: error.to_string(),
                    retry_at,
                }
            }
        };
        let came = now();
        // The order is taken (not copied): when the worker writes instead, it acts on what the write leaves.
        if let Some(next) = goes_on_unwritten(order, kind, &outcome, came, lease_until, config, unwritten.len()) {
            unwritten.push((kind, outcome, came));
            order = next;
            continue;
        }
        unwritten.push((kind, outcome, came));
        let (kept_until, recorded) = write_outcomes(store, config, owner, job, std::mem::take(&mut unwritten)).await;
        let (change, kept) = match recorded {
            Ok(recorded) => recorded,
            Err(error) => return settled(store, owner, job, Err(error)).await,
        };
        let WorkflowSchedule::DueAt(due_at) = change.workflow else {
            return Ok(Ran::finished(Some(change.order)));
        };
        if !kept {
            return Ok(Ran {
                order: Some(change.order),
                left_to_claim: true,
            });
        }
        // The job is still ours: tell who waits how the order stands, and go on with its next step.
        lease_until = kept_until;
        signals.settled(&job.order_id, || Some(Arc::new(change.order.clone())));
        let wait = due_at.unix_micros() - now().unix_micros();
        order = if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64)).await;
            // Another change may have come meanwhile (an undo, say): act on the order as it is now.
            match store.order(&job.shop_id, &job.order_id).await? {
                Some(current) => current,
                None => {
                    store.finish_job(&job.order_id, owner).await?;
                    return Ok(Ran::finished(None));
                }
            }
        } else {
            change.order
        };
    }
}

/// Writes the outcomes of steps run one after another as one change, offering to keep the job's
/// lease through it for the next step (outcomes of many jobs share one transaction: group commit).
/// When the change leaves the restock due now (the payment step is the last to call out), the stock
/// goes back in the same transaction: one commit fewer per cancellation. Answers until when the
/// lease is kept, if it is, and what the change came to.
async fn write_outcomes(
    store: &Store,
    config: &WorkerConfig,
    owner: &str,
    job: &Job,
    outcomes: Vec<(StepKind, StepOutcome, Timestamp)>,
) -> (Timestamp, Result<(OrderChange, bool), ChangeError<StaleStep>>) {
    let started = now();
    let lease = Lease {
        owner: owner.to_owned(),
        until: later(started, config.lease),
        keep_if_due_by: later(started, CONTINUE_WITHIN),
    };
    let kept_until = lease.until;
    let recorded = store
        .change_order_leased_then_restock(
            &job.shop_id,
            &job.order_id,
            lease,
            move |current, _| record_step_outcomes(current, outcomes, &mut RandomIds),
            record_restock,
        )
        .await;
    (kept_until, recorded)
}

/// The longest a call keeps the outcomes before it unwritten: a slower partner has them written
/// while it answers, so what the earlier steps did is seen at once (the order cancelled once the
/// channel confirmed, W4) and only fast partners' outcomes share a change.
const UNWRITTEN_HOLD_MAX: Duration = Duration::from_millis(250);

/// The most outcomes the worker holds unwritten: one per step that calls out (the channel, the
/// warehouse, the refund), so a run of calls is written at least once per cancellation's steps.
const UNWRITTEN_MAX: usize = 3;

/// The order as the step's `outcome`, which came at `came`, leaves it — when the worker may make the
/// next call before writing the outcome: that call is due at once, is a partner's call (not the
/// outbound's creation, nor the restock, which the store runs in the outcome's own transaction), and
/// ends, however long the partner takes, before the lease does. Writing both outcomes in one change
/// saves a transaction per cancellation; it risks nothing W7 does not already cover: if the process
/// stops before the write, the steps run again with the same idempotency keys.
fn goes_on_unwritten(
    order: Order,
    kind: StepKind,
    outcome: &StepOutcome,
    came: Timestamp,
    lease_until: Timestamp,
    config: &WorkerConfig,
    held: usize,
) -> Option<Order> {
    if held + 1 >= UNWRITTEN_MAX || later(came, config.partner_timeout) >= lease_until {
        return None;
    }
    let change = record_step_outcome(order, kind, outcome.clone(), &mut RandomIds, came).ok()?;
    let WorkflowSchedule::DueAt(due_at) = change.workflow else {
        return None;
    };
    if due_at > came {
        return None;
    }
    match pending_work(&change.order)? {
        PendingWork::Channel(_) | PendingWork::Warehouse(_) | PendingWork::Payment(_) | PendingWork::NothingOwed => {
            Some(change.order)
        }
        PendingWork::CreateOutbound(_) | PendingWork::Restock => None,
    }
}

/// The restock step's outcome: what went back, was back already, or is not stocked here.
fn record_restock(current: &Order, report: rescind_store::RestockReport) -> Result<OrderChange, StaleStep> {
    let outcome = StepOutcome::Restocked {
        restocked: report.restocked,
        already: report.already,
        missing: report.missing,
    };
    record_step_outcome(current.clone(), StepKind::Restock, outcome, &mut RandomIds, now())
}

/// `duration` after `at`.
fn later(at: Timestamp, duration: Duration) -> Timestamp {
    Timestamp::from_unix_micros(at.unix_micros() + duration.as_micros() as i64)
}

/// What a run of a job leaves.
struct Ran {
    /// The order as the last recorded outcome left it; `None` when not known.
    order: Option<Order>,
    /// The job is left due, free for any worker to claim (a later step, a retry): the loop must
    /// look for it, and sleep no longer than until it falls due.
    left_to_claim: bool,
}

impl Ran {
    /// Nothing left to claim: the job finished, or the worker still holds it.
    fn finished(order: Option<Order>) -> Ran {
        Ran {
            order,
            left_to_claim: false,
        }
    }
}

/// What a recorded outcome leaves: the order as it now stands, and its next step (if any) to be
/// claimed. A stale step (recorded already, or undone meanwhile) or a vanished order only finishes
/// the job.
async fn settled(
    store: &Store,
    owner: &str,
    job: &Job,
    recorded: Result<OrderChange, ChangeError<StaleStep>>,
) -> Result<Ran> {
    match recorded {
        Ok(change) => Ok(Ran {
            left_to_claim: matches!(change.workflow, WorkflowSchedule::DueAt(_)),
            order: Some(change.order),
        }),
        Err(ChangeError::Refused(StaleStep) | ChangeError::NotFound) => {
            store.finish_job(&job.order_id, owner).await?;
            Ok(Ran::finished(None))
        }
        Err(ChangeError::Store(error)) => Err(error),
    }
}

/// Makes the payment provider call of a refund step.
async fn payment_call(
    store: &Store,
    http: &reqwest::Client,
    order: &Order,
    call: &PaymentCall,
) -> Result<Result<StepOutcome, CallError>> {
    let Some(provider) = store.payment_provider(&order.shop_id, &call.provider_id).await? else {
        return Ok(Err(CallError::Misconfigured {
            message: format!("the payment provider {} no longer exists", call.provider_id),
        }));
    };
    let connector = match PaymentConnector::new(
        provider.kind,
        &provider.base_url,
        provider.credentials.as_deref(),
        http.clone(),
    ) {
        Ok(connector) => connector,
        Err(error) => return Ok(Err(error)),
    };
    Ok(match call.action {
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
    })
}

/// The OpenLogi account of a warehouse integration, paced under its rate limit.
pub fn openlogi(warehouse: &rescind_store::Warehouse, http: &reqwest::Client) -> Result<OpenLogi, CallError> {
    OpenLogi::new(
        http.clone(),
        &warehouse.base_url,
        warehouse.credentials.as_deref(),
        warehouse.rate_limit,
        Duration::from_millis(warehouse.rate_limit_window_ms),
    )
}

/// The recipient as OpenLogi takes it.
pub fn recipient(address: &rescind_domain::Address) -> Recipient {
    Recipient {
        name: address.name.clone(),
        postcode: address.postcode.clone(),
        prefecture: address
            .prefecture
            .clone()
            .or_else(|| address.province.clone())
            .unwrap_or_default(),
        address1: address.address1.clone(),
        address2: address.address2.clone(),
        phone: address.phone.clone(),
    }
}

/// Creates the order's outbound request at its warehouse (F1).
async fn create_outbound(
    store: &Store,
    http: &reqwest::Client,
    config: &WorkerConfig,
    order: &Order,
    call: &OutboundCall,
) -> Result<OutboundOutcome> {
    let Some(warehouse) = store.warehouse(&order.shop_id, &call.warehouse_id).await? else {
        return Ok(OutboundOutcome::Refused {
            message: format!("the warehouse {} no longer exists", call.warehouse_id),
        });
    };
    let connector = match openlogi(&warehouse, http) {
        Ok(connector) => connector,
        Err(error) => {
            return Ok(OutboundOutcome::Refused {
                message: error.to_string(),
            })
        }
    };
    let shipment = NewShipment {
        identifier: call.identifier.clone(),
        order_no: call.order_no.clone(),
        recipient: recipient(&call.recipient),
        items: call.items.clone(),
    };
    let attempts = order.outbound.as_ref().map_or(0, |outbound| outbound.attempts);
    Ok(match connector.create(&shipment, &call.idempotency_key).await {
        Ok(created) => OutboundOutcome::Created {
            status: OutboundStatus::parse(&created.status).unwrap_or(OutboundStatus::Waiting),
            external_id: created.id,
        },
        Err(CallError::Refused { message } | CallError::Misconfigured { message }) => {
            OutboundOutcome::Refused { message }
        }
        Err(error @ (CallError::Transient { .. } | CallError::Unknown { .. })) => OutboundOutcome::Failed {
            message: error.to_string(),
            retry_at: config.retry.retry_at(attempts + 1, rand::random::<f64>(), now()),
        },
    })
}

/// Stops the order's outbound request at the warehouse, by what it is now (F2, C4, C5): deleted
/// before confirmation, a cancellation request while the warehouse works (when the integration
/// sends them), too late from packed on.
async fn warehouse_call(
    store: &Store,
    http: &reqwest::Client,
    order: &Order,
    call: &WarehouseCall,
) -> Result<Result<StepOutcome, CallError>> {
    let Some(warehouse) = store.warehouse(&order.shop_id, &call.warehouse_id).await? else {
        return Ok(Err(CallError::Misconfigured {
            message: format!("the warehouse {} no longer exists", call.warehouse_id),
        }));
    };
    let connector = match openlogi(&warehouse, http) {
        Ok(connector) => connector,
        Err(error) => return Ok(Err(error)),
    };
    Ok(stop_outbound(&connector, &warehouse, order, call).await)
}

async fn stop_outbound(
    connector: &OpenLogi,
    warehouse: &rescind_store::Warehouse,
    order: &Order,
    call: &WarehouseCall,
) -> Result<StepOutcome, CallError> {
    let fee = |fee: Option<i64>| fee.map(|fee| rescind_domain::Money::from_minor_units(fee, order.currency));
    // Two passes: a delete refused because the warehouse just began picking is decided again.
    for _ in 0..2 {
        let current = match &call.external_id {
            Some(id) => match connector.get(id).await {
                Ok(shipment) => Some(shipment),
                Err(CallError::Refused { message }) if message.contains(" 404") => None,
                Err(error) => return Err(error),
            },
            None => connector.find_by_identifier(&call.identifier).await?,
        };
        let Some(shipment) = current else {
            return Ok(StepOutcome::OutboundStopped {
                message: "no outbound request was at the warehouse".to_owned(),
            });
        };
        let status = OutboundStatus::parse(&shipment.status).unwrap_or(OutboundStatus::Picking);
        if status.deletable() {
            match connector.delete(&shipment.id, &call.idempotency_key).await {
                Ok(()) => {
                    return Ok(StepOutcome::OutboundStopped {
                        message: format!("deleted the outbound request {} ({status})", shipment.id),
                    })
                }
                Err(CallError::Refused { .. }) => continue,
                Err(error) => return Err(error),
            }
        }
        return match status {
            OutboundStatus::CancelRequest => Ok(StepOutcome::CancelRequested {
                fee: fee(shipment.fee),
                message: format!("outbound request {}", shipment.id),
            }),
            OutboundStatus::Deleted | OutboundStatus::Requested => Ok(StepOutcome::OutboundStopped {
                message: format!("the outbound request {} is gone", shipment.id),
            }),
            status if status.cancel_requestable() && warehouse.settings.cancel_after_confirmation => {
                let requested = connector.request_cancel(&shipment.id, &call.idempotency_key).await?;
                Ok(StepOutcome::CancelRequested {
                    fee: fee(requested.fee),
                    message: format!("outbound request {}", shipment.id),
                })
            }
            status if status.in_the_warehouses_hands() => Ok(StepOutcome::WarehouseTooLate {
                status,
                message: "the warehouse is working on it and takes no cancellation request from rescind in this status"
                    .to_owned(),
            }),
            status => Ok(StepOutcome::WarehouseTooLate {
                status,
                message: format!("the outbound request {} is {status}", shipment.id),
            }),
        };
    }
    Err(CallError::Transient {
        message: "the outbound request kept changing while it was being stopped".to_owned(),
    })
}

/// Sends the cancel of a channel step to the order's sales channel (C3).
async fn channel_call(
    store: &Store,
    http: &reqwest::Client,
    order: &Order,
    call: &ChannelCall,
) -> Result<Result<StepOutcome, CallError>> {
    let Some(channel) = store.channel(&order.shop_id, &call.channel_id).await? else {
        return Ok(Err(CallError::Misconfigured {
            message: format!("the channel {} no longer exists", call.channel_id),
        }));
    };
    let connector = match ChannelConnector::new(
        channel.kind,
        channel.base_url.as_deref(),
        channel.credentials.as_deref(),
        http.clone(),
    ) {
        Ok(connector) => connector,
        Err(error) => return Ok(Err(error)),
    };
    Ok(connector
        .cancel(call)
        .await
        .map(|message| StepOutcome::ChannelCancelled { message }))
}

/// The most open orders of one channel looked at in one poll.
pub const POLL_ORDERS_MAX: u32 = 500;

/// What a poll of one channel found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Open orders asked about.
    pub checked: usize,
    /// Orders the channel showed as cancelled, whose cancellation now runs here (H3).
    pub cancelled: Vec<String>,
}

/// Asks the channel which of its open orders here it shows as cancelled, and runs the workflow from
/// the warehouse step on for each of them — once: an order whose cancellation is already recorded is
/// not asked about again, and a second report changes nothing.
pub async fn poll_channel(
    store: &Store,
    workflow: &Workflow,
    http: &reqwest::Client,
    channel: &rescind_store::Channel,
) -> Result<PollReport> {
    if !channel.kind.requires_channel_cancel() {
        return Ok(PollReport::default());
    }
    let open = store.open_channel_order_ids(&channel.id, POLL_ORDERS_MAX).await?;
    if open.is_empty() {
        return Ok(PollReport::default());
    }
    let connector = ChannelConnector::new(
        channel.kind,
        channel.base_url.as_deref(),
        channel.credentials.as_deref(),
        http.clone(),
    )
    .map_err(|error| anyhow::anyhow!("cannot poll {}: {error}", channel.id))?;
    let cancelled_there = connector
        .cancelled_among(&open)
        .await
        .map_err(|error| anyhow::anyhow!("poll of {} failed: {error}", channel.id))?;
    let warehouses = store.warehouses(&channel.shop_id).await?;
    let mut report = PollReport {
        checked: open.len(),
        cancelled: Vec::new(),
    };
    for channel_order_id in cancelled_there {
        let Some(order_id) = store
            .order_id_by_channel_order_id(&channel.id, &channel_order_id)
            .await?
        else {
            continue;
        };
        let recorded = store
            .change_order(&channel.shop_id, &order_id, |order| {
                rescind_domain::cancelled_at_channel(
                    order,
                    None,
                    "found by polling",
                    warehouse_settings(&warehouses, order),
                    &mut RandomIds,
                    now(),
                )
            })
            .await;
        match recorded {
            Ok(change) => {
                if matches!(change.workflow, rescind_domain::WorkflowSchedule::DueAt(_)) {
                    workflow.wake();
                }
                report.cancelled.push(order_id);
            }
            Err(ChangeError::Refused(_) | ChangeError::NotFound) => {}
            Err(ChangeError::Store(error)) => return Err(error),
        }
    }
    Ok(report)
}

/// Polls every marketplace channel every `interval` until `shutdown` turns true (H3).
pub async fn run_poller(
    store: Store,
    workflow: Workflow,
    interval: Duration,
    http: reqwest::Client,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let channels = match store.all_channels().await {
            Ok(channels) => channels,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "failed to list channels to poll");
                continue;
            }
        };
        for channel in channels.iter().filter(|channel| channel.cancel_sync) {
            match poll_channel(&store, &workflow, &http, channel).await {
                Ok(report) if !report.cancelled.is_empty() => {
                    tracing::info!(channel_id = %channel.id, cancelled = report.cancelled.len(), "orders cancelled at the channel")
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), channel_id = %channel.id, "channel poll failed")
                }
            }
        }
    }
}

pub use rescind_store::warehouse_settings;

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(watch: &mut Watch) -> Vec<String> {
        std::iter::from_fn(|| watch.outcomes.try_recv().ok())
            .map(|settled| settled.order_id)
            .collect()
    }

    #[test]
    fn a_watch_hears_the_outcomes_of_its_own_orders_only_and_is_gone_once_dropped() {
        let workflow = Workflow::new();
        let mut first = workflow.watch(&["ord_a"]);
        let mut second = workflow.watch(&["ord_b", "ord_a"]);
        workflow.signals.settled("ord_a", || None);
        workflow.signals.settled("ord_b", || None);
        workflow
            .signals
            .settled("ord_c", || panic!("nobody watches ord_c: its order is not even built"));
        assert_eq!(heard(&mut first), ["ord_a"]);
        assert_eq!(heard(&mut second), ["ord_a", "ord_b"]);
        drop(first);
        workflow.signals.settled("ord_a", || None);
        assert_eq!(
            heard(&mut second),
            ["ord_a"],
            "the other watch of the order still hears it"
        );
        drop(second);
        assert!(workflow.signals.watchers.lock().unwrap().by_order.is_empty());
    }
}
