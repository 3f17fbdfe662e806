//! Cancelling (API.md "Cancelling"): one order, many orders, dry runs, and recording refunds.

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{cancel_error_code, sentence, ApiError, ErrorBody};
use crate::input::{self, Problems};
use crate::routes::orders::page_size;
use crate::routes::query;
use crate::wire::{
    cancellation_body, cancelled_lines_body, order_answer, order_body, refund_body, BulkCancelRequest,
    BulkCancelResponse, BulkCancelResult, CancelRequest, CancellationList, CancellationListItem, DryRunBody, OrderBody,
    PlanBody, PlanStepBody, RecordRefundRequest, RecordRefundResponse, RestockLine, UndoRequest,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rescind_connectors::payments::PaymentConnector;
use rescind_connectors::CallError;
use rescind_domain::cancel::cancel_order as decide_cancel;
use rescind_domain::{
    plan_cancellation, plan_undo, record_reauthorization_declined, record_refund as decide_refund, retry_cancellation,
    undo_cancellation, CancelError, CancelPlan, CancellationStatus, Order, OrderChange, OrderStatus, Reauthorization,
    RequestedBy, RetryError, Scope, StepKind, UndoError, WorkflowSchedule,
};
use rescind_domain::{Actor, CancelOptions, StepStatus};
use rescind_store::{now, ChangeError, RandomIds, ShopSetup, BULK_ORDERS_MAX};
use rescind_workflow::{is_processing, Watch};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Counts a cancel that went through, by the cancellation's status.
fn count_cancelled(state: &AppState, order: &Order) {
    let status = order
        .cancellation
        .as_ref()
        .map_or(CancellationStatus::Completed, |cancellation| cancellation.status);
    state.metrics.count_cancellation(status.as_str());
}

/// 200 when every step has finished, 202 while one is still running or waiting on a partner.
fn cancel_status(order: &Order) -> StatusCode {
    match order.cancellation.as_ref().map(|cancellation| cancellation.status) {
        Some(CancellationStatus::Processing) => StatusCode::ACCEPTED,
        Some(
            CancellationStatus::Requested
            | CancellationStatus::AwaitingRefund
            | CancellationStatus::Completed
            | CancellationStatus::Rejected
            | CancellationStatus::Failed
            | CancellationStatus::Undone,
        )
        | None => StatusCode::OK,
    }
}

fn plan_body(order: &Order, plan: &CancelPlan) -> PlanBody {
    PlanBody {
        steps: plan
            .steps
            .iter()
            .map(|step| PlanStepBody {
                kind: step.kind.as_str().to_owned(),
                action: step.action.clone(),
                fee: step.fee.map(|fee| fee.format(order.currency)),
            })
            .collect(),
        line_items: cancelled_lines_body(&plan.scope),
        refund_amount: plan.refund_amount.format(order.currency),
        restock: plan
            .restock
            .iter()
            .map(|(sku, quantity)| RestockLine {
                sku: sku.clone(),
                quantity: *quantity,
            })
            .collect(),
        warnings: plan
            .warnings
            .iter()
            .map(|warning| warning.as_str().to_owned())
            .collect(),
        cancellation_status: plan.cancellation_status.as_str().to_owned(),
    }
}

/// Cancels one order (C1–C7, W1–W6), or with `dry_run` shows what that would do (B2).
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/cancel", tag = "cancelling", params(("order_id" = String, Path)),
    request_body = CancelRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled: every step has finished; or the plan of a dry run", body = crate::wire::CancelAnswer),
        (status = 202, description = "A step is still running or waiting", body = OrderBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "order_not_cancellable, return_required, already_cancelled, channel_cancel_required, payment_provider_required, partial_cancel_unsupported", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let request: CancelRequest = parse_json(&body)?;
    let options = input::cancel_options(request.cancel_options(), RequestedBy::Merchant);
    let lines = request.line_items.as_deref().map(input::cancel_lines).transpose();
    let (options, lines) = match (options, lines) {
        (Ok(options), Ok(lines)) => (options, lines.unwrap_or_default()),
        (options, lines) => {
            let problems = options
                .err()
                .unwrap_or_default()
                .into_iter()
                .chain(lines.err().unwrap_or_default());
            return Err(ApiError::invalid(problems.collect()));
        }
    };
    let options = CancelOptions { lines, ..options };
    if request.dry_run == Some(true) {
        // Boxed: the plan's reads would otherwise make every cancel's future larger (B2 is rare).
        return Box::pin(dry_run(&state, &shop.shop_id, &order_id, &options)).await;
    }
    let actor = principal.actor();
    // Before the change, so the wait hears every outcome of its steps.
    let watch = state.workflow.watch(&[&order_id]);
    let (changed, steps) = write_cancel(&state, &shop.shop_id, &order_id, move |order, setup| {
        decide(order, &options, setup, &actor)
    })
    .await;
    cancel_outcome(&state, &shop.shop_id, watch, changed, steps).await
}

/// The plan of a dry run (B2): what cancelling the order with these options would do.
async fn dry_run(
    state: &AppState,
    shop_id: &str,
    order_id: &str,
    options: &CancelOptions,
) -> Result<Response, ApiError> {
    let setup = state.store.shop_setup(shop_id).await?;
    let order = state
        .store
        .order(shop_id, order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    let plan = plan_cancellation(&order, &options_for(options, &setup, &order))?;
    Ok(Json(DryRunBody {
        plan: plan_body(&order, &plan),
    })
    .into_response())
}

/// Who runs the steps a change scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepsGo {
    /// The worker claims them once woken (any process's worker, in fact).
    ToBeClaimed,
    /// This process's worker got the job with the order already ([`write_cancel`]).
    Handed,
}

/// Writes a single cancel decision in the group writer. With a free place in this process's worker,
/// the order's job is written leased to it and handed over once committed, so the worker neither
/// claims the job nor reads the order; the write and the hand-off go on when the request is dropped
/// ([`FinishedIfDropped`]), so a client that goes away cannot leave a committed job waiting out its
/// lease.
async fn write_cancel(
    state: &AppState,
    shop_id: &str,
    order_id: &str,
    decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, CancelError> + Send + 'static,
) -> (Result<Box<OrderChange>, ChangeError<CancelError>>, StepsGo) {
    let Some(reservation) = state.workflow.reserve() else {
        let changed = state.store.change_order_grouped(shop_id, order_id, decide).await;
        return (changed.map(Box::new), StepsGo::ToBeClaimed);
    };
    let store = state.store.clone();
    let (shop_id, order_id) = (shop_id.to_owned(), order_id.to_owned());
    FinishedIfDropped::new(async move {
        let changed = store
            .change_order_leased(&shop_id, &order_id, reservation.lease(), decide)
            .await;
        match changed {
            Ok((change, true)) => {
                if let WorkflowSchedule::DueAt(due_at) = change.workflow {
                    reservation.hand_off(store, change.order.clone(), due_at);
                }
                (Ok(Box::new(change)), StepsGo::Handed)
            }
            Ok((change, false)) => (Ok(Box::new(change)), StepsGo::ToBeClaimed),
            Err(error) => (Err(error), StepsGo::ToBeClaimed),
        }
    })
    .await
}

/// A future run in place by the request that awaits it, and in a task of its own from where it
/// stopped when that request is dropped first (its client went away): what a `tokio::spawn` of it
/// guarantees, without a task per cancel while the client waits.
struct FinishedIfDropped<F: Future<Output: Send + 'static> + Send + 'static> {
    future: Option<Pin<Box<F>>>,
}

impl<F: Future<Output: Send + 'static> + Send + 'static> FinishedIfDropped<F> {
    fn new(future: F) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl<F: Future<Output: Send + 'static> + Send + 'static> Future for FinishedIfDropped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let future = self
            .future
            .as_mut()
            .expect("FinishedIfDropped polled after it finished");
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(output)
    }
}

impl<F: Future<Output: Send + 'static> + Send + 'static> Drop for FinishedIfDropped<F> {
    fn drop(&mut self) {
        if let (Some(future), Ok(runtime)) = (self.future.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(future);
        }
    }
}

/// Answers a cancel decision (a merchant's cancel, an accepted customer request): the order once its
/// cancellation settled, or why nothing changed. `watch` was taken before the change was written.
/// The change comes boxed, as the wait's future is: moved between futures and tasks, an order is
/// over a kilobyte, and every byte of a future is copied as it is boxed or spawned.
pub(crate) async fn cancel_outcome(
    state: &AppState,
    shop_id: &str,
    watch: Watch,
    changed: Result<Box<OrderChange>, ChangeError<CancelError>>,
    steps: StepsGo,
) -> Result<Response, ApiError> {
    match changed {
        Ok(change) => {
            let order = match change.workflow {
                WorkflowSchedule::DueAt(_) => Box::pin(settled_order(state, shop_id, watch, change, steps)).await?,
                WorkflowSchedule::Unchanged | WorkflowSchedule::Finished => change.order,
            };
            if let Some(message) = failed_gate(&order, StepKind::WarehouseCancel) {
                state.metrics.count_cancellation("order_not_cancellable");
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "order_not_cancellable",
                    format!(
                        "The warehouse could not stop order {}, so nothing changed: {message}",
                        order.number
                    ),
                ));
            }
            if let Some(message) = channel_refusal(&order) {
                state.metrics.count_cancellation("channel_refused");
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "channel_refused",
                    format!(
                        "{} refused the cancel, so nothing changed: {message}",
                        order.channel_kind
                    ),
                ));
            }
            count_cancelled(state, &order);
            Ok(order_answer(cancel_status(&order), &order))
        }
        Err(ChangeError::NotFound) => Err(ApiError::not_found("order")),
        Err(ChangeError::Refused(refusal)) => {
            state.metrics.count_cancellation(cancel_error_code(&refusal));
            Err(refusal.into())
        }
        Err(ChangeError::Store(error)) => Err(ApiError::internal(&error)),
    }
}

/// The cancel decision for one order, with its shop's setup (single and bulk alike).
fn decide(order: Order, options: &CancelOptions, setup: &ShopSetup, actor: &Actor) -> Result<OrderChange, CancelError> {
    let options = options_for(options, setup, &order);
    decide_cancel(order, &options, actor, &mut RandomIds, now()).map(|(_, change)| change)
}

/// The options with the order's channel's and warehouse's settings filled in.
pub(crate) fn options_for(options: &CancelOptions, setup: &ShopSetup, order: &Order) -> CancelOptions {
    CancelOptions {
        channel_cancel_sync: setup.channel_cancel_sync(order),
        warehouse: setup.warehouse_settings(order),
        ..options.clone()
    }
}

/// The channel's own message when it refused the cancel (C3): the cancellation failed at its first step.
fn channel_refusal(order: &Order) -> Option<String> {
    failed_gate(order, StepKind::ChannelCancel)
}

/// Why a gate failed the cancellation: the channel refused, or the warehouse could not stop the goods.
fn failed_gate(order: &Order, kind: StepKind) -> Option<String> {
    let cancellation = order
        .cancellation
        .as_ref()
        .filter(|c| c.status == CancellationStatus::Failed)?;
    let step = cancellation
        .step(kind)
        .filter(|step| step.status == StepStatus::Failed)?;
    Some(step.last_error.clone().unwrap_or_else(|| step.message.clone()))
}

/// Wakes the worker when the change scheduled a step it was not handed, and waits up to the
/// configured bound for the cancellation to settle; returns the order as it then is. `watch`, taken
/// before the change was written, hears every outcome of its steps, so the order is not read before
/// the wait.
async fn settled_order(
    state: &AppState,
    shop_id: &str,
    watch: Watch,
    change: Box<OrderChange>,
    steps: StepsGo,
) -> Result<Order, ApiError> {
    if !matches!(change.workflow, WorkflowSchedule::DueAt(_)) {
        return Ok(change.order);
    }
    match steps {
        StepsGo::ToBeClaimed => state.workflow.wake(),
        StepsGo::Handed => {}
    }
    let processing: HashSet<String> = if is_processing(&change.order) {
        HashSet::from([change.order.id.clone()])
    } else {
        HashSet::new()
    };
    let mut known = state
        .workflow
        .wait_until_settled_watched(watch, &state.store, shop_id, processing, state.settings.cancel_wait)
        .await?;
    // As the worker's last outcome left it; read only when this process's worker did not say.
    if let Some(order) = known.remove(&change.order.id) {
        return Ok(Arc::unwrap_or_clone(order));
    }
    Ok(Box::pin(state.store.order(shop_id, &change.order.id))
        .await?
        .unwrap_or(change.order))
}

/// The warehouse step's message of a cancelled order, for the bulk result.
fn warehouse_message(order: &Order) -> Option<String> {
    let step = order.cancellation.as_ref()?.step(StepKind::WarehouseCancel)?;
    Some(step.message.clone())
}

/// The two per-order messages of W8 for a cancelled order: the channel step's and the restock step's.
fn step_messages(order: &Order) -> Vec<String> {
    let Some(cancellation) = &order.cancellation else {
        return Vec::new();
    };
    [(StepKind::ChannelCancel, "channel"), (StepKind::Restock, "restock")]
        .iter()
        .filter_map(|(kind, label)| {
            cancellation
                .step(*kind)
                .map(|step| format!("{label}: {}", step.message))
        })
        .collect()
}

/// Cancels up to 1000 orders with the same options; one result per order, in the order given (W8).
#[utoipa::path(post, path = "/api/v1/orders/cancel", tag = "cancelling", request_body = BulkCancelRequest,
    security(("bearer" = [])),
    responses((status = 200, body = BulkCancelResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn bulk_cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<BulkCancelResponse>, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let request: BulkCancelRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    let order_ids: Vec<String> = match &request.order_ids {
        None => {
            problems.push("order_ids", "is required");
            Vec::new()
        }
        Some(ids) if ids.is_empty() => {
            problems.push("order_ids", "needs at least one order id");
            Vec::new()
        }
        Some(ids) if ids.len() > BULK_ORDERS_MAX => {
            problems.push(
                "order_ids",
                format_args!("has {} ids; at most {BULK_ORDERS_MAX} are accepted", ids.len()),
            );
            Vec::new()
        }
        Some(ids) => ids.clone(),
    };
    let options = input::cancel_options(request.cancel_options(), RequestedBy::Merchant);
    let options = match options {
        Ok(options) if problems.0.is_empty() => options,
        Ok(_) => return Err(ApiError::invalid(problems.0)),
        Err(errors) => {
            problems.0.extend(errors);
            return Err(ApiError::invalid(problems.0));
        }
    };
    let actor = principal.actor();
    let setup = state.store.shop_setup(&shop.shop_id).await?;
    let results = state
        .store
        .change_orders(&shop.shop_id, &order_ids, |order| {
            decide(order.clone(), &options, &setup, &actor)
                .map_err(|refusal| (refusal, order.number.clone(), order.status))
        })
        .await?;
    // Orders whose channel (or payment provider) is being called: wait for them within the bound,
    // so the results carry the channel's answer (W8).
    let scheduled: Vec<String> = results
        .iter()
        .filter_map(|result| match result {
            Ok(change) if matches!(change.workflow, WorkflowSchedule::DueAt(_)) => Some(change.order.id.clone()),
            _ => None,
        })
        .collect();
    let mut settled: HashMap<String, Order> = HashMap::new();
    if !scheduled.is_empty() {
        state.workflow.wake();
        let known = state
            .workflow
            .wait_until_settled(&state.store, &shop.shop_id, &scheduled, state.settings.cancel_wait)
            .await?;
        settled.extend(
            known
                .into_iter()
                .map(|(order_id, order)| (order_id, Arc::unwrap_or_clone(order))),
        );
        for order_id in &scheduled {
            if settled.contains_key(order_id) {
                continue;
            }
            if let Some(order) = state.store.order(&shop.shop_id, order_id).await? {
                settled.insert(order_id.clone(), order);
            }
        }
    }
    let results = order_ids
        .iter()
        .zip(results)
        .map(
            |(order_id, result)| match result.map(|change| settled.remove(order_id).unwrap_or(change.order)) {
                Ok(order) if channel_refusal(&order).is_some() => {
                    state.metrics.count_cancellation("channel_refused");
                    BulkCancelResult {
                        order_id: order_id.clone(),
                        number: Some(order.number.clone()),
                        ok: false,
                        status: Some(order.status.as_str().to_owned()),
                        code: Some("channel_refused".to_owned()),
                        messages: vec![
                            format!("channel: {}", channel_refusal(&order).unwrap_or_default()),
                            "restock: not run: the channel cancel did not succeed".to_owned(),
                        ],
                        warehouse_message: None,
                    }
                }
                Ok(order) => {
                    count_cancelled(&state, &order);
                    BulkCancelResult {
                        order_id: order_id.clone(),
                        number: Some(order.number.clone()),
                        ok: true,
                        status: Some(order.status.as_str().to_owned()),
                        code: None,
                        messages: step_messages(&order),
                        warehouse_message: warehouse_message(&order),
                    }
                }
                Err(ChangeError::Refused((refusal, number, status))) => {
                    state.metrics.count_cancellation(cancel_error_code(&refusal));
                    refused_result(order_id, number, status, &refusal)
                }
                Err(ChangeError::NotFound) => BulkCancelResult {
                    order_id: order_id.clone(),
                    number: None,
                    ok: false,
                    status: None,
                    code: Some("not_found".to_owned()),
                    messages: vec!["order: no such order in this shop".to_owned()],
                    warehouse_message: None,
                },
                Err(ChangeError::Store(error)) => {
                    tracing::error!(error = format!("{error:#}"), "bulk cancel: unexpected per-order error");
                    BulkCancelResult {
                        order_id: order_id.clone(),
                        number: None,
                        ok: false,
                        status: None,
                        code: Some("internal".to_owned()),
                        messages: vec!["order: something went wrong on our side; nothing was changed".to_owned()],
                        warehouse_message: None,
                    }
                }
            },
        )
        .collect();
    Ok(Json(BulkCancelResponse { results }))
}

fn refused_result(order_id: &str, number: String, status: OrderStatus, refusal: &CancelError) -> BulkCancelResult {
    let error = ApiError::from(refusal.clone());
    BulkCancelResult {
        order_id: order_id.to_owned(),
        number: Some(number),
        ok: false,
        status: Some(status.as_str().to_owned()),
        code: Some(error.code.to_owned()),
        messages: vec![
            format!(
                "channel: not run: {}",
                error
                    .errors
                    .as_ref()
                    .and_then(|errors| errors.first())
                    .unwrap_or(&error.message)
            ),
            "restock: not run: the order was not cancelled".to_owned(),
        ],
        warehouse_message: None,
    }
}

/// Records a refund made outside rescind (a bank transfer, store credit, points). Completes a
/// cancellation waiting for it (W4); on an order that is not cancelled it warns the goods still ship (W9).
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/refunds", tag = "cancelling", params(("order_id" = String, Path)),
    request_body = RecordRefundRequest, security(("bearer" = [])),
    responses((status = 201, body = RecordRefundResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "payment_provider_required", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn record_refund(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<RecordRefundResponse>), ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let request: RecordRefundRequest = parse_json(&body)?;
    let actor = principal.actor();
    let changed = state
        .store
        .change_order(&shop.shop_id, &order_id, |order| {
            let refund = input::refund_request(&request, order.currency).map_err(ApiError::invalid)?;
            decide_refund(order, &refund, &actor, &mut RandomIds, now()).map_err(ApiError::from)
        })
        .await;
    match changed {
        Ok(change) => {
            let refund = change
                .new_refunds
                .first()
                .expect("a recorded refund creates one refund");
            Ok((
                StatusCode::CREATED,
                Json(RecordRefundResponse {
                    refund: refund_body(&change.order, refund),
                    order: order_body(&change.order),
                }),
            ))
        }
        Err(ChangeError::NotFound) => Err(ApiError::not_found("order")),
        Err(ChangeError::Refused(error)) => Err(error),
        Err(ChangeError::Store(error)) => Err(ApiError::internal(&error)),
    }
}

/// The query of `GET /cancellations`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListCancellationsQuery {
    /// `true`: only those an operator must look at (W7).
    #[param(required = false, value_type = bool)]
    pub needs_attention: Option<bool>,
    /// 1 to 500, default 50.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The shop's cancellations, newest first; `needs_attention=true` lists those a step failed for.
#[utoipa::path(get, path = "/api/v1/cancellations", tag = "cancelling", params(ListCancellationsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = CancellationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_cancellations(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    list_query: Result<Query<ListCancellationsQuery>, QueryRejection>,
) -> Result<Json<CancellationList>, ApiError> {
    let shop = principal.shop(Scope::ReadOrder)?;
    let list_query = query(list_query)?;
    let mut problems = Problems::default();
    let limit = page_size(&mut problems, list_query.limit.as_deref());
    problems.into_result(()).map_err(ApiError::invalid)?;
    let cursor = list_query.cursor.as_deref().filter(|cursor| !cursor.is_empty());
    let page = state
        .store
        .cancellations(&shop.shop_id, list_query.needs_attention, cursor, limit)
        .await?;
    Ok(Json(CancellationList {
        items: page
            .items
            .iter()
            .map(|item| CancellationListItem {
                order_id: item.order_id.clone(),
                number: item.number.clone(),
                cancellation: cancellation_body(&item.cancellation),
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Re-drives a cancellation on the needs-attention list: its failed step runs again (W7).
#[utoipa::path(post, path = "/api/v1/cancellations/{cancellation_id}/retry", tag = "cancelling",
    params(("cancellation_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OrderBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "not_needing_attention", body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(cancellation_id): Path<String>,
) -> Result<Response, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let order_id = state
        .store
        .order_id_of_cancellation(&shop.shop_id, &cancellation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("cancellation"))?;
    let actor = principal.actor();
    // Before the change, so the wait hears every outcome of its steps.
    let watch = state.workflow.watch(&[&order_id]);
    let changed = state
        .store
        .change_order(&shop.shop_id, &order_id, |order| {
            let current = order.cancellation.as_ref().map(|c| c.id.as_str());
            if current != Some(cancellation_id.as_str()) {
                return Err(RetryError::NotNeedingAttention);
            }
            retry_cancellation(order, &actor, now())
        })
        .await;
    match changed {
        Ok(change) => Ok(order_answer(
            StatusCode::OK,
            &settled_order(&state, &shop.shop_id, watch, Box::new(change), StepsGo::ToBeClaimed).await?,
        )),
        Err(ChangeError::NotFound) => Err(ApiError::not_found("cancellation")),
        Err(ChangeError::Refused(refusal)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_needing_attention",
            sentence(refusal.to_string()),
        )),
        Err(ChangeError::Store(error)) => Err(ApiError::internal(&error)),
    }
}

/// Undoes a cancellation (U1, U3): the order is open again. A voided or refunded card payment is
/// authorized again first; if the provider declines, nothing changes (409 `payment_failed`).
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/uncancel", tag = "cancelling", params(("order_id" = String, Path)),
    request_body = UndoRequest, security(("bearer" = [])),
    responses((status = 200, body = OrderBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "cancellation_irreversible, not_cancelled, cancellation_in_progress, payment_failed", body = ErrorBody),
        (status = 502, description = "payment provider unreachable", body = ErrorBody)))]
pub async fn undo_cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let request: UndoRequest = parse_json(&body)?;
    let order = state
        .store
        .order(&shop.shop_id, &order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    // U2: the stock that went back must still be there to take out again, unless forced.
    if order.restocked && !request.force.unwrap_or(false) {
        let mut short = Vec::new();
        for (sku, quantity) in &order.stock_snapshot {
            let available = state
                .store
                .stock(&shop.shop_id, sku)
                .await?
                .map_or(0, |level| level.available);
            if available < i64::from(*quantity) {
                short.push(format!("{sku}: {available} in stock, {quantity} needed"));
            }
        }
        if !short.is_empty() {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "insufficient_stock",
                message: "The restocked goods are no longer in stock; undo with force to take them out anyway."
                    .to_owned(),
                errors: Some(short),
            });
        }
    }
    let reauthorized = match plan_undo(&order).map_err(undo_error)? {
        None => None,
        Some(reauthorization) => match reauthorize(&state, &shop.shop_id, &reauthorization).await {
            Ok(reference) => Some(reference),
            Err(Reauthorize::Declined(message)) => {
                let actor = principal.actor();
                let recorded = state
                    .store
                    .change_order(&shop.shop_id, &order_id, |order| {
                        record_reauthorization_declined(order, &message, &actor, now())
                    })
                    .await;
                if let Err(ChangeError::Store(error)) = recorded {
                    return Err(ApiError::internal(&error));
                }
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "payment_failed",
                    format!("The payment could not be authorized again, so the cancellation stays: {message}."),
                ));
            }
            Err(Reauthorize::Failed(error)) => return Err(error),
        },
    };
    let actor = principal.actor();
    let changed = state
        .store
        .change_order(&shop.shop_id, &order_id, |order| {
            undo_cancellation(order, reauthorized.clone(), &actor, now())
        })
        .await;
    match changed {
        Ok(change) => Ok(order_answer(StatusCode::OK, &change.order)),
        Err(ChangeError::NotFound) => Err(ApiError::not_found("order")),
        Err(ChangeError::Refused(refusal)) => Err(undo_error(refusal)),
        Err(ChangeError::Store(error)) => Err(ApiError::internal(&error)),
    }
}

fn undo_error(error: UndoError) -> ApiError {
    let code = match &error {
        UndoError::NotCancelled { .. } => "not_cancelled",
        UndoError::InProgress { .. } => "cancellation_in_progress",
        UndoError::Irreversible { .. } => "cancellation_irreversible",
        UndoError::ReauthorizationMissing => "payment_failed",
        UndoError::PartiallyCancelled { .. } => "cancellation_irreversible",
    };
    ApiError::new(StatusCode::CONFLICT, code, sentence(error.to_string()))
}

/// Why a re-authorization did not happen.
enum Reauthorize {
    /// The provider said no; nothing happened there.
    Declined(String),
    /// Misconfigured, unreachable, or an unexpected error: answered as it is.
    Failed(ApiError),
}

/// Asks the payment provider for a new authorization (U3).
async fn reauthorize(
    state: &AppState,
    shop_id: &str,
    reauthorization: &Reauthorization,
) -> Result<String, Reauthorize> {
    let provider = state
        .store
        .payment_provider(shop_id, &reauthorization.provider_id)
        .await
        .map_err(|error| Reauthorize::Failed(ApiError::internal(&error)))?
        .ok_or_else(|| {
            Reauthorize::Declined(format!(
                "payment provider {} no longer exists",
                reauthorization.provider_id
            ))
        })?;
    let connector = PaymentConnector::new(
        provider.kind,
        &provider.base_url,
        provider.credentials.as_deref(),
        state.http.clone(),
    )
    .map_err(|error| Reauthorize::Declined(error.to_string()))?;
    match connector
        .reauthorize(
            &reauthorization.reference,
            reauthorization.amount,
            reauthorization.currency,
            &reauthorization.idempotency_key,
        )
        .await
    {
        Ok(authorization) => Ok(authorization.reference),
        Err(CallError::Refused { message } | CallError::Misconfigured { message }) => {
            Err(Reauthorize::Declined(message))
        }
        Err(error @ (CallError::Transient { .. } | CallError::Unknown { .. })) => {
            Err(Reauthorize::Failed(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "payment_failed",
                format!("The payment provider could not be reached, so nothing changed; try again: {error}."),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FinishedIfDropped;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_future_awaited_to_its_end_answers_in_place() {
        assert_eq!(FinishedIfDropped::new(async { 7 }).await, 7);
    }

    #[tokio::test]
    async fn a_future_whose_request_is_dropped_half_way_still_runs_to_its_end() {
        let (go_on, went_on) = oneshot::channel::<()>();
        let (finished, heard) = oneshot::channel::<()>();
        let ended = Arc::new(AtomicBool::new(false));
        let ended_there = ended.clone();
        let request = tokio::spawn(async move {
            FinishedIfDropped::new(async move {
                went_on.await.expect("the test goes on");
                ended_there.store(true, Ordering::SeqCst);
                finished.send(()).expect("the test hears");
            })
            .await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        request.abort();
        assert!(request.await.expect_err("aborted").is_cancelled());
        assert!(!ended.load(Ordering::SeqCst), "nothing ran past the wait yet");
        go_on.send(()).expect("the dropped request's future still listens");
        tokio::time::timeout(Duration::from_secs(5), heard)
            .await
            .expect("the rest ran in a task of its own")
            .expect("and finished");
        assert!(ended.load(Ordering::SeqCst));
    }
}
