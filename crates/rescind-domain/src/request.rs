//! Customer cancellation requests (PRODUCT.md §4): a customer asks, an operator accepts — which runs the
//! cancellation of §3 — or rejects, which leaves the order as it was.

use crate::cancel::{cancel_order, check_cancellable, CancelError, CancelOptions, RequestedBy};
use crate::history::{Actor, HistoryEntry};
use crate::ids::IdSource;
use crate::order::{Order, OrderChange};
use crate::time::Timestamp;

crate::named_enum! {
    pub enum RequestStatus {
        /// Waiting for an operator; the order shows "cancellation requested (customer)" (Q1).
        Requested => "requested",
        /// An operator accepted it and the cancellation ran (Q2).
        Accepted => "accepted",
        /// An operator turned it down; the order is as it was (Q2).
        Rejected => "rejected",
    }
}

/// A customer's request to cancel an order; an order keeps its latest one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancellationRequest {
    pub id: String,
    pub status: RequestStatus,
    /// The customer's words.
    pub reason: String,
    /// The operator's reason for accepting or rejecting.
    pub decision_reason: Option<String>,
    /// The cancellation an accepted request started.
    pub cancellation_id: Option<String>,
    pub created_at: Timestamp,
    pub decided_at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Q1: the shop has not turned customer requests on.
    #[error("this shop does not take cancellation requests from customers; turn on the setting customer_cancellation_requests to allow them")]
    Disabled,
    /// Q1: only before the order ships, and not when it is already cancelled.
    #[error(transparent)]
    NotCancellable(CancelError),
    #[error("order {number} already has an open cancellation request ({request_id}); accept or reject it first")]
    AlreadyRequested { number: String, request_id: String },
    #[error("cancellation request {request_id} was already {status}")]
    AlreadyDecided { request_id: String, status: RequestStatus },
    /// A newer request replaced it; an older one was always decided before the newer was made.
    #[error("cancellation request {request_id} was already decided, and a newer request followed it")]
    Superseded { request_id: String },
    /// Accepting ran the cancellation, which refused.
    #[error(transparent)]
    Cancel(CancelError),
}

/// Q1: records the customer's request on the order, if the shop takes requests and the order may
/// still be cancelled. Nothing else about the order changes.
pub fn request_cancellation(
    order: &Order,
    reason: &str,
    requests_enabled: bool,
    actor: &Actor,
    ids: &mut dyn IdSource,
    now: Timestamp,
) -> Result<OrderChange, RequestError> {
    if !requests_enabled {
        return Err(RequestError::Disabled);
    }
    if let Some(open) = order
        .cancellation_request
        .as_ref()
        .filter(|r| r.status == RequestStatus::Requested)
    {
        return Err(RequestError::AlreadyRequested {
            number: order.number.clone(),
            request_id: open.id.clone(),
        });
    }
    let options = CancelOptions {
        requested_by: RequestedBy::Customer,
        ..CancelOptions::default()
    };
    check_cancellable(order, &options).map_err(RequestError::NotCancellable)?;
    let request = CancellationRequest {
        id: ids.new_id("req"),
        status: RequestStatus::Requested,
        reason: reason.to_owned(),
        decision_reason: None,
        cancellation_id: None,
        created_at: now,
        decided_at: None,
    };
    let entry = HistoryEntry::new(
        now,
        "cancellation.requested",
        actor,
        format!("Cancellation requested (customer): {reason}"),
    )
    .with("request_id", request.id.clone());
    let mut order = order.clone();
    order.cancellation_request = Some(request);
    order.updated_at = now;
    Ok(OrderChange::new(order, vec![entry], Vec::new()))
}

/// The order's request `request_id`, still waiting for a decision.
fn open_request<'a>(order: &'a Order, request_id: &str) -> Result<&'a CancellationRequest, RequestError> {
    let request = order
        .cancellation_request
        .as_ref()
        .filter(|request| request.id == request_id)
        .ok_or_else(|| RequestError::Superseded {
            request_id: request_id.to_owned(),
        })?;
    match request.status {
        RequestStatus::Requested => Ok(request),
        status @ (RequestStatus::Accepted | RequestStatus::Rejected) => Err(RequestError::AlreadyDecided {
            request_id: request_id.to_owned(),
            status,
        }),
    }
}

/// Q2: the operator accepts; the cancellation of §3 runs with their reason and refund method, as asked
/// for by the customer, and grants the request. When the cancellation refuses, the request stays open.
pub fn accept_request(
    order: &Order,
    request_id: &str,
    options: &CancelOptions,
    actor: &Actor,
    ids: &mut dyn IdSource,
    now: Timestamp,
) -> Result<OrderChange, RequestError> {
    open_request(order, request_id)?;
    let options = CancelOptions {
        requested_by: RequestedBy::Customer,
        ..options.clone()
    };
    let (_, change) = cancel_order(order.clone(), &options, actor, ids, now).map_err(RequestError::Cancel)?;
    Ok(change)
}

/// Any cancellation of the order grants the customer's open request: whoever cancelled it — the
/// operator accepting, the merchant directly, the channel — did what the customer asked.
pub(crate) fn grant_open_request(
    order: &mut Order,
    cancellation_id: &str,
    reason: Option<&str>,
    actor: &Actor,
    now: Timestamp,
    history: &mut Vec<HistoryEntry>,
) {
    let Some(request) = order
        .cancellation_request
        .as_mut()
        .filter(|request| request.status == RequestStatus::Requested)
    else {
        return;
    };
    request.status = RequestStatus::Accepted;
    request.decision_reason = reason.map(str::to_owned);
    request.cancellation_id = Some(cancellation_id.to_owned());
    request.decided_at = Some(now);
    history.push(
        HistoryEntry::new(
            now,
            "cancellation_request.accepted",
            actor,
            "The customer's cancellation request is granted by this cancellation.",
        )
        .with("request_id", request.id.clone())
        .with("cancellation_id", cancellation_id.to_owned()),
    );
}

/// A cancellation that granted the customer's request failed (the channel refused, the warehouse could
/// not stop the goods): nothing was cancelled, so the request waits for a decision again.
pub(crate) fn reopen_request(
    order: &mut Order,
    cancellation_id: &str,
    now: Timestamp,
    history: &mut Vec<HistoryEntry>,
) {
    let Some(request) = order.cancellation_request.as_mut().filter(|request| {
        request.status == RequestStatus::Accepted && request.cancellation_id.as_deref() == Some(cancellation_id)
    }) else {
        return;
    };
    request.status = RequestStatus::Requested;
    request.decision_reason = None;
    request.cancellation_id = None;
    request.decided_at = None;
    history.push(
        HistoryEntry::new(
            now,
            "cancellation_request.reopened",
            &Actor::System,
            "The cancellation failed, so the customer's cancellation request is open again.",
        )
        .with("request_id", request.id.clone()),
    );
}

/// Q2: the operator rejects with a reason; only the request changes.
pub fn reject_request(
    order: &Order,
    request_id: &str,
    reason: &str,
    actor: &Actor,
    now: Timestamp,
) -> Result<OrderChange, RequestError> {
    let mut request = open_request(order, request_id)?.clone();
    request.status = RequestStatus::Rejected;
    request.decision_reason = Some(reason.to_owned());
    request.decided_at = Some(now);
    let entry = HistoryEntry::new(
        now,
        "cancellation_request.rejected",
        actor,
        format!("The customer's cancellation request was rejected: {reason}"),
    )
    .with("request_id", request.id.clone());
    let mut order = order.clone();
    order.cancellation_request = Some(request);
    order.updated_at = now;
    Ok(OrderChange::new(order, vec![entry], Vec::new()))
}
