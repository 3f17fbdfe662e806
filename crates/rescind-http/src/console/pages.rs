//! The console's screens: each handler reads through the API, renders a template, and for a form
//! post checks the origin and the CSRF token, calls the API, and redirects (or shows what failed).

use super::api::{query_string, segment, Api, ApiFailure};
use super::i18n::{Lang, Texts};
use super::session::{
    clear_cookie, cookie, cross_origin, language, new_form_token, new_session, set_cookie, Form, Operator,
    LANGUAGE_COOKIE, SESSION_COOKIE, SESSION_TTL, SIGN_IN_COOKIE,
};
use super::ConsoleState;
use crate::auth::hash_secret;
use crate::body::REQUEST_BODY_BYTES_MAX;
use crate::wire::{
    BulkCancelResponse, CancelReasonBody, CancelReasonList, CancellationList, CancellationListItem,
    CancellationRequestBody, CancellationRequestList, ChannelBody, ChannelList, DryRunBody, HistoryEntryBody,
    HistoryList, OrderBody, OrderList, StockBody, StockList, SyncHistoryEntryBody, SyncHistoryList,
};
use askama::Template;
use axum::body::{to_bytes, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use rescind_domain::{
    CancellationStatus, ChannelKind, FinancialStatus, FulfillmentStatus, OrderStatus, RequestStatus, SyncKind,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Orders per page of the order list.
pub const ORDERS_PAGE_SIZE: u32 = 50;
/// The most orders one cancel dialog takes: two pages of the list.
pub const SELECTION_MAX: usize = 100;
/// The most orders a dialog previews with a dry run each; the rest are counted.
pub const PREVIEW_MAX: usize = 20;
/// Rows per page of the other lists.
pub const LIST_PAGE_SIZE: u32 = 50;
/// Yahoo!'s reason detail, when its reason needs one (H2).
const REASON_DETAIL_CHARS: std::ops::RangeInclusive<usize> = 10..=200;
/// The longest form key taken from a form; with its prefix and a channel id it stays under the
/// API's idempotency key limit (255).
const FORM_KEY_LENGTH_MAX: usize = 180;
/// How long the language cookie lasts.
const LANGUAGE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a sign-in form may wait before it is sent.
const SIGN_IN_FORM_TTL: Duration = Duration::from_secs(3600);

type Params = Query<HashMap<String, String>>;

fn param<'p>(params: &'p HashMap<String, String>, name: &str) -> &'p str {
    params.get(name).map_or("", |value| value.trim())
}

// ---- the frame of every page ----

/// A message at the top of a page: what was done, or what failed and why.
#[derive(Debug)]
pub struct Flash {
    pub ok: bool,
    pub heading: String,
    pub message: String,
    pub details: Vec<String>,
}

impl Flash {
    fn done(heading: &str) -> Flash {
        Flash {
            ok: true,
            heading: heading.to_owned(),
            message: String::new(),
            details: Vec::new(),
        }
    }

    fn failed(t: &Texts, failure: &ApiFailure) -> Flash {
        Flash {
            ok: false,
            heading: t.error_heading(&failure.body.code).to_owned(),
            message: failure.body.error.clone(),
            details: failure.body.errors.clone().unwrap_or_default(),
        }
    }

    fn problem(heading: &str) -> Flash {
        Flash {
            ok: false,
            heading: heading.to_owned(),
            message: String::new(),
            details: Vec::new(),
        }
    }
}

/// What a redirect's `?notice=` names, shown once on the page it lands on.
fn notice(t: &Texts, params: &HashMap<String, String>) -> Option<Flash> {
    let heading = match param(params, "notice") {
        "cancelled" => t.cancelled_done,
        "undone" => t.undone_done,
        "refund" => t.refund_done,
        "retried" => t.retry_done,
        "accepted" => t.accept_done,
        "rejected" => t.reject_done,
        "adjusted" => t.adjust_done,
        "nothing_selected" => return Some(Flash::problem(t.nothing_selected)),
        _ => return None,
    };
    Some(Flash::done(heading))
}

/// The header, navigation and message of every page.
pub struct Chrome {
    pub t: &'static Texts,
    pub csrf: String,
    pub nav: &'static str,
    /// The page's own address, for the language links to come back to.
    pub back: String,
    pub signed_in: bool,
    pub flash: Option<Flash>,
}

impl Chrome {
    fn new(operator: &Operator, nav: &'static str, back: String, flash: Option<Flash>) -> Chrome {
        Chrome {
            t: operator.lang.texts(),
            csrf: operator.session.csrf_token.clone(),
            nav,
            back: form_urlencoded::byte_serialize(back.as_bytes()).collect(),
            signed_in: true,
            flash,
        }
    }

    fn signed_out(lang: Lang) -> Chrome {
        Chrome {
            t: lang.texts(),
            csrf: String::new(),
            nav: "",
            back: "%2Fconsole%2Fsign_in".to_owned(),
            signed_in: false,
            flash: None,
        }
    }
}

/// One option of a select.
#[derive(Debug)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn choices(values: &[&'static str], label: impl Fn(&'static str) -> String, selected: &str) -> Vec<Choice> {
    values
        .iter()
        .map(|value| Choice {
            value: (*value).to_owned(),
            label: label(value),
            selected: *value == selected,
        })
        .collect()
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "failed to render a console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, location.to_owned())]).into_response()
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    chrome: Chrome,
    heading: String,
    message: String,
}

fn message_page(chrome: Chrome, status: StatusCode, heading: &str, message: &str) -> Response {
    render(
        status,
        &MessagePage {
            chrome,
            heading: heading.to_owned(),
            message: message.to_owned(),
        },
    )
}

/// A form posted by a signed-in operator, its origin and CSRF token checked; otherwise the answer is
/// the page that says why (or the sign-in page).
pub struct Posted {
    pub operator: Operator,
    pub form: Form,
}

impl FromRequest<ConsoleState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &ConsoleState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let t = operator.lang.texts();
        let refuse = |operator: &Operator, status: StatusCode, message: &str| {
            let chrome = Chrome::new(operator, "", "/console/orders".to_owned(), None);
            message_page(chrome, status, t.error_title, message)
        };
        let Ok(bytes) = to_bytes(body, REQUEST_BODY_BYTES_MAX).await else {
            return Err(refuse(&operator, StatusCode::PAYLOAD_TOO_LARGE, t.error_title));
        };
        let form = Form::parse(&bytes);
        if cross_origin(&parts.headers) || !operator.csrf_ok(&form) {
            return Err(refuse(&operator, StatusCode::FORBIDDEN, t.csrf_failed));
        }
        Ok(Posted { operator, form })
    }
}

/// Sends a form's action to the API: `Ok` when it was done; otherwise the status and the message the
/// page shows.
async fn act(operator: &Operator, path: &str, body: Value, key: &str) -> Result<(), (StatusCode, Flash)> {
    match operator.api.post::<Value>(path, body, key).await {
        Ok(_) => Ok(()),
        Err(failure) => Err((failure.status, Flash::failed(operator.lang.texts(), &failure))),
    }
}

/// The idempotency key of a form: one per rendered form, so a form sent twice acts once.
fn form_key(form: &Form, action: &str) -> String {
    let key = form.get("form_key");
    let key = if key.is_empty() || key.len() > FORM_KEY_LENGTH_MAX {
        new_form_token()
    } else {
        key.to_owned()
    };
    format!("console-{action}-{key}")
}

/// `2026-12-01T10:00:00.123Z` as `2026-12-01 10:00 UTC`.
pub fn display_time(at: &str) -> String {
    match (at.get(0..10), at.get(11..16)) {
        (Some(day), Some(minute)) => format!("{day} {minute} UTC"),
        _ => at.to_owned(),
    }
}

/// An amount with its currency: `¥1,200`, `$19.59`, `12.00 EUR`.
pub fn money(amount: &str, currency: &str) -> String {
    let (sign, digits) = amount.strip_prefix('-').map_or(("", amount), |rest| ("-", rest));
    let (whole, fraction) = digits
        .split_once('.')
        .map_or((digits, None), |(whole, fraction)| (whole, Some(fraction)));
    let mut grouped = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let number = match fraction {
        Some(fraction) => format!("{grouped}.{fraction}"),
        None => grouped,
    };
    match currency {
        "JPY" => format!("{sign}¥{number}"),
        "USD" => format!("{sign}${number}"),
        _ => format!("{sign}{number} {currency}"),
    }
}

fn channel_name(channels: &HashMap<String, ChannelBody>, t: &Texts, channel_id: &str, kind: &str) -> String {
    match channels.get(channel_id) {
        Some(channel) if channel.name != t.channel_kind(kind) => format!("{} ({})", channel.name, t.channel_kind(kind)),
        _ => t.channel_kind(kind).to_owned(),
    }
}

async fn channels_by_id(api: &Api) -> HashMap<String, ChannelBody> {
    match api.get::<ChannelList>("/channels").await {
        Ok(list) => list
            .items
            .into_iter()
            .map(|channel| (channel.id.clone(), channel))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// One of the API's lists: a page of items and the cursor of the next.
trait ListPage: serde::de::DeserializeOwned {
    type Item;
    fn into_page(self) -> (Vec<Self::Item>, Option<String>);
}

macro_rules! list_pages {
    ($($list:ty => $item:ty),+ $(,)?) => {
        $(impl ListPage for $list {
            type Item = $item;
            fn into_page(self) -> (Vec<$item>, Option<String>) {
                (self.items, self.next_cursor)
            }
        })+
    };
}

list_pages!(
    OrderList => OrderBody,
    CancellationRequestList => CancellationRequestBody,
    CancellationList => CancellationListItem,
    SyncHistoryList => SyncHistoryEntryBody,
    StockList => StockBody,
);

/// Reads a page of a list; when the API refuses (a bad filter), the page shows why over an empty list.
async fn read_list<L: ListPage>(
    api: &Api,
    path: &str,
    t: &Texts,
    flash: &mut Option<Flash>,
) -> (Vec<L::Item>, Option<String>) {
    match api.get::<L>(path).await {
        Ok(list) => list.into_page(),
        Err(failure) => {
            *flash = Some(Flash::failed(t, &failure));
            (Vec::new(), None)
        }
    }
}

// ---- signing in and out, language ----

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    sign_in_csrf: String,
    error: Option<&'static str>,
}

fn sign_in_page(headers: &HeaderMap, status: StatusCode, error: Option<&'static str>) -> Response {
    let sign_in_csrf = new_form_token();
    let mut response = render(
        status,
        &SignInPage {
            chrome: Chrome::signed_out(language(headers)),
            sign_in_csrf: sign_in_csrf.clone(),
            error,
        },
    );
    if let Ok(value) = set_cookie(headers, SIGN_IN_COOKIE, &sign_in_csrf, SIGN_IN_FORM_TTL).parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

pub async fn sign_in_form(headers: HeaderMap) -> Response {
    sign_in_page(&headers, StatusCode::OK, None)
}

pub async fn sign_in(State(state): State<ConsoleState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let t = language(&headers).texts();
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    let csrf_ok =
        !expected.is_empty() && crate::auth::equal_in_constant_time(form.get("csrf").as_bytes(), expected.as_bytes());
    if cross_origin(&headers) || !csrf_ok {
        return sign_in_page(&headers, StatusCode::FORBIDDEN, Some(t.csrf_failed));
    }
    let token_hash = hash_secret(form.get("token"));
    let access = match crate::auth::shop_access(&state.app, &token_hash).await {
        Ok(access) => access,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "console sign-in failed");
            return sign_in_page(&headers, StatusCode::INTERNAL_SERVER_ERROR, Some(t.error_title));
        }
    };
    if form.get("token").is_empty() || access.is_none() {
        return sign_in_page(&headers, StatusCode::UNAUTHORIZED, Some(t.sign_in_failed));
    }
    let (secret, session) = new_session(token_hash, rescind_store::now());
    if let Err(error) = state.app.store.create_console_session(&session).await {
        tracing::error!(error = format!("{error:#}"), "failed to store a console session");
        return sign_in_page(&headers, StatusCode::INTERNAL_SERVER_ERROR, Some(t.error_title));
    }
    let mut response = see_other("/console/orders");
    for value in [
        set_cookie(&headers, SESSION_COOKIE, &secret, SESSION_TTL),
        clear_cookie(&headers, SIGN_IN_COOKIE),
    ] {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

pub async fn sign_out(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Posted { operator, .. }: Posted,
) -> Response {
    if let Err(error) = state.app.store.end_console_session(&operator.session.id_hash).await {
        tracing::error!(error = format!("{error:#}"), "failed to end a console session");
    }
    let mut response = see_other("/console/sign_in");
    if let Ok(value) = clear_cookie(&headers, SESSION_COOKIE).parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// Sets the language and goes back to the page it was chosen on (only ever a console page).
pub async fn choose_language(headers: HeaderMap, Query(params): Params) -> Response {
    let back = param(&params, "back");
    let back = if back.starts_with("/console") && !back.contains("//") && !back.contains('\\') {
        back
    } else {
        "/console/orders"
    };
    let mut response = see_other(back);
    if let Some(lang) = Lang::parse(param(&params, "lang")) {
        if let Ok(value) = set_cookie(&headers, LANGUAGE_COOKIE, lang.code(), LANGUAGE_TTL).parse() {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

pub async fn not_found(headers: HeaderMap) -> Response {
    let t = language(&headers).texts();
    message_page(
        Chrome::signed_out(language(&headers)),
        StatusCode::NOT_FOUND,
        t.not_found,
        "",
    )
}

// ---- orders ----

/// One row of the order list.
pub struct OrderRow {
    pub id: String,
    pub number: String,
    pub channel: String,
    pub channel_order_id: String,
    pub customer: String,
    pub total: String,
    pub status: String,
    pub fulfillment_status: String,
    pub financial_status: String,
    pub cancellation_status: String,
    pub created_at: String,
    /// The same moment as sent by the API, for `<time datetime>` (the script shows it in local time).
    pub created_at_rfc3339: String,
    pub warnings: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/orders.html")]
struct OrdersPage {
    chrome: Chrome,
    q: String,
    statuses: Vec<Choice>,
    fulfillment_statuses: Vec<Choice>,
    financial_statuses: Vec<Choice>,
    cancellation_statuses: Vec<Choice>,
    channels: Vec<Choice>,
    rows: Vec<OrderRow>,
    next_page: Option<String>,
    on_first_page: bool,
    form_key: String,
}

const ORDER_FILTERS: [&str; 6] = [
    "status",
    "fulfillment_status",
    "financial_status",
    "channel_id",
    "cancellation_status",
    "q",
];

pub async fn orders(operator: Operator, Query(params): Params) -> Response {
    let t = operator.lang.texts();
    let filters: Vec<(&str, &str)> = ORDER_FILTERS.iter().map(|name| (*name, param(&params, name))).collect();
    let limit = ORDERS_PAGE_SIZE.to_string();
    let cursor = param(&params, "cursor");
    let mut api_query = filters.clone();
    api_query.push(("limit", &limit));
    api_query.push(("cursor", cursor));
    let mut flash = notice(t, &params);
    let channels = channels_by_id(&operator.api).await;
    let (orders, next_cursor) = read_list::<OrderList>(
        &operator.api,
        &format!("/orders{}", query_string(api_query)),
        t,
        &mut flash,
    )
    .await;
    let rows = orders
        .iter()
        .map(|order| OrderRow {
            id: order.id.clone(),
            number: order.number.clone(),
            channel: channel_name(&channels, t, &order.channel_id, &order.channel_kind),
            channel_order_id: order.channel_order_id.clone().unwrap_or_default(),
            customer: order.customer.name.clone().unwrap_or_default(),
            total: money(&order.total_price, &order.currency),
            status: t.order_status(&order.status).to_owned(),
            fulfillment_status: t.fulfillment_status(&order.fulfillment_status).to_owned(),
            financial_status: t.financial_status(&order.financial_status).to_owned(),
            cancellation_status: order
                .cancellation
                .as_ref()
                .map(|cancellation| t.cancellation_status(&cancellation.status).to_owned())
                .or_else(|| {
                    order
                        .cancellation_request
                        .as_ref()
                        .filter(|request| request.status == "requested")
                        .map(|_| t.cancellation_status("requested").to_owned())
                })
                .unwrap_or_default(),
            created_at: display_time(&order.created_at),
            created_at_rfc3339: order.created_at.clone(),
            warnings: order
                .warnings
                .iter()
                .map(|warning| t.warning(warning).to_owned())
                .collect(),
        })
        .collect();
    let next_page = next_cursor.map(|cursor| {
        let mut pairs = filters.clone();
        pairs.push(("cursor", &cursor));
        format!("/console/orders{}", query_string(pairs))
    });
    let mut channel_choices: Vec<Choice> = channels
        .values()
        .map(|channel| Choice {
            value: channel.id.clone(),
            label: channel_name(&channels, t, &channel.id, &channel.kind),
            selected: channel.id == param(&params, "channel_id"),
        })
        .collect();
    channel_choices.sort_by(|a, b| a.label.cmp(&b.label));
    let back = format!(
        "/console/orders{}",
        query_string(filters.iter().copied().chain([("cursor", cursor)]))
    );
    let page = OrdersPage {
        chrome: Chrome::new(&operator, "orders", back, flash),
        q: param(&params, "q").to_owned(),
        statuses: choices(
            OrderStatus::names().as_slice(),
            |value| t.order_status(value).to_owned(),
            param(&params, "status"),
        ),
        fulfillment_statuses: choices(
            FulfillmentStatus::names().as_slice(),
            |value| t.fulfillment_status(value).to_owned(),
            param(&params, "fulfillment_status"),
        ),
        financial_statuses: choices(
            FinancialStatus::names().as_slice(),
            |value| t.financial_status(value).to_owned(),
            param(&params, "financial_status"),
        ),
        cancellation_statuses: choices(
            CancellationStatus::names().as_slice(),
            |value| t.cancellation_status(value).to_owned(),
            param(&params, "cancellation_status"),
        ),
        channels: channel_choices,
        rows,
        next_page,
        on_first_page: cursor.is_empty(),
        form_key: new_form_token(),
    };
    render(StatusCode::OK, &page)
}

// ---- the cancel dialog ----

/// A reason of a channel's list, for a select.
pub struct ReasonChoice {
    pub code: String,
    pub label: String,
    pub detail_required: bool,
    pub selected: bool,
}

/// The orders of one channel in the dialog, with that channel's reasons (H2).
pub struct ChannelGroup {
    pub channel_id: String,
    pub name: String,
    /// Id, number and currency of each order.
    pub orders: Vec<(String, String, String)>,
    pub customer_reasons: Vec<ReasonChoice>,
    pub store_reasons: Vec<ReasonChoice>,
    pub reason_required: bool,
    pub detail: String,
}

impl ChannelGroup {
    /// A channel's group with its reasons, `chosen` selected, and no orders yet.
    fn of(channel_id: String, name: String, list: &CancelReasonList, lang: Lang, chosen: &str, detail: &str) -> Self {
        ChannelGroup {
            channel_id,
            name,
            orders: Vec::new(),
            customer_reasons: reason_choices(&list.items, "customer", lang, chosen),
            store_reasons: reason_choices(&list.items, "store", lang, chosen),
            reason_required: list.reason_code_required,
            detail: detail.to_owned(),
        }
    }

    fn chosen(&self) -> Option<&ReasonChoice> {
        self.customer_reasons
            .iter()
            .chain(&self.store_reasons)
            .find(|reason| reason.selected)
    }

    pub fn has_reasons(&self) -> bool {
        !self.customer_reasons.is_empty() || !self.store_reasons.is_empty()
    }

    pub fn detail_wanted(&self) -> bool {
        self.customer_reasons
            .iter()
            .chain(&self.store_reasons)
            .any(|reason| reason.detail_required)
    }
}

/// What one order's dry run says will happen (B2).
pub struct PreviewRow {
    pub number: String,
    pub error: Option<String>,
    pub steps: Vec<(String, String, String)>,
    pub refund_amount: String,
    pub restock: Vec<String>,
    pub warnings: Vec<String>,
}

/// The options of the dialog as the operator left them.
pub struct CancelValues {
    pub reason: String,
    pub refund_methods: Vec<Choice>,
    pub restock: bool,
    pub notify_customer: bool,
    pub staff_note: String,
}

impl CancelValues {
    fn from_form(t: &Texts, form: &Form, fresh: bool) -> CancelValues {
        CancelValues {
            reason: form.get("reason").to_owned(),
            refund_methods: refund_method_choices(t, form.get("refund_method")),
            restock: fresh || form.checked("restock"),
            notify_customer: fresh || form.checked("notify_customer"),
            staff_note: form.get("staff_note").to_owned(),
        }
    }

    fn refund_method(&self) -> Option<&str> {
        self.refund_methods
            .iter()
            .find(|choice| choice.selected && !choice.value.is_empty())
            .map(|choice| choice.value.as_str())
    }
}

fn refund_method_choices(t: &Texts, selected: &str) -> Vec<Choice> {
    let mut all = vec![Choice {
        value: String::new(),
        label: t.refund_method_default.to_owned(),
        selected: selected.is_empty(),
    }];
    all.extend(t.refund_methods().into_iter().map(|(value, label)| Choice {
        value: value.to_owned(),
        label: label.to_owned(),
        selected: value == selected,
    }));
    all
}

#[derive(Template)]
#[template(path = "console/cancel.html")]
struct CancelPage {
    chrome: Chrome,
    form_key: String,
    order_ids: Vec<String>,
    groups: Vec<ChannelGroup>,
    values: CancelValues,
    preview: Vec<PreviewRow>,
    preview_more: usize,
    previewed: bool,
}

fn reason_choices(reasons: &[CancelReasonBody], group: &str, lang: Lang, selected: &str) -> Vec<ReasonChoice> {
    reasons
        .iter()
        .filter(|reason| reason.group == group)
        .map(|reason| ReasonChoice {
            code: reason.code.clone(),
            label: match lang {
                Lang::Ja => reason.label_ja.clone(),
                Lang::En => reason.label_en.clone(),
            },
            detail_required: reason.detail_required,
            selected: reason.code == selected,
        })
        .collect()
}

/// A channel without a reason list (or one the token may not read).
const NO_REASONS: CancelReasonList = CancelReasonList {
    items: Vec::new(),
    reason_code_required: false,
};

/// A channel's cancel reasons (H2).
async fn reasons(api: &Api, channel_id: &str) -> CancelReasonList {
    api.get::<CancelReasonList>(&format!("/channels/{}/cancel_reasons", segment(channel_id)))
        .await
        .unwrap_or(NO_REASONS)
}

/// The selected orders grouped by channel, in the order first selected; orders that cannot be read
/// are named in the failures.
async fn dialog_groups(
    operator: &Operator,
    order_ids: &[String],
    form: &Form,
) -> (Vec<ChannelGroup>, Vec<(String, String)>) {
    let t = operator.lang.texts();
    let channels = channels_by_id(&operator.api).await;
    let mut groups: Vec<ChannelGroup> = Vec::new();
    let mut failures = Vec::new();
    for order_id in order_ids {
        let order = match operator
            .api
            .get::<OrderBody>(&format!("/orders/{}", segment(order_id)))
            .await
        {
            Ok(order) => order,
            Err(failure) => {
                failures.push((order_id.clone(), failure.body.error));
                continue;
            }
        };
        if let Some(group) = groups.iter_mut().find(|group| group.channel_id == order.channel_id) {
            group.orders.push((order.id, order.number, order.currency));
            continue;
        }
        let list = reasons(&operator.api, &order.channel_id).await;
        let chosen = form.get(&format!("reason_code:{}", order.channel_id));
        let mut group = ChannelGroup::of(
            order.channel_id.clone(),
            channel_name(&channels, t, &order.channel_id, &order.channel_kind),
            &list,
            operator.lang,
            chosen,
            form.get(&format!("reason_detail:{}", order.channel_id)),
        );
        group.orders.push((order.id, order.number, order.currency));
        groups.push(group);
    }
    (groups, failures)
}

fn selected_orders(form: &Form) -> Vec<String> {
    let mut ids = form.all("order_id");
    ids.truncate(SELECTION_MAX);
    ids
}

async fn dialog(operator: &Operator, form: &Form, fresh: bool, preview: bool, failure: Option<Flash>) -> Response {
    let t = operator.lang.texts();
    let order_ids = selected_orders(form);
    if order_ids.is_empty() {
        return see_other("/console/orders?notice=nothing_selected");
    }
    let (groups, failures) = dialog_groups(operator, &order_ids, form).await;
    let values = CancelValues::from_form(t, form, fresh);
    let mut rows = Vec::new();
    if preview {
        let values = &values;
        let planned: Vec<(&String, &String, &String, Value)> = groups
            .iter()
            .flat_map(|group| {
                group
                    .orders
                    .iter()
                    .map(move |(id, number, currency)| (id, number, currency, cancel_body(values, group, true)))
            })
            .take(PREVIEW_MAX)
            .collect();
        for (order_id, number, currency, body) in planned {
            rows.push(preview_row(operator, order_id, number.clone(), currency, body).await);
        }
    }
    let order_count: usize = groups.iter().map(|group| group.orders.len()).sum();
    let flash = failure.or_else(|| {
        (!failures.is_empty()).then(|| Flash {
            ok: false,
            heading: t.not_found.to_owned(),
            message: String::new(),
            details: failures
                .into_iter()
                .map(|(order_id, message)| format!("{order_id}: {message}"))
                .collect(),
        })
    });
    let page = CancelPage {
        chrome: Chrome::new(operator, "orders", "/console/orders".to_owned(), flash),
        form_key: if preview || fresh || form.get("form_key").is_empty() {
            new_form_token()
        } else {
            form.get("form_key").to_owned()
        },
        order_ids: groups
            .iter()
            .flat_map(|group| group.orders.iter().map(|(id, _, _)| id.clone()))
            .collect(),
        preview_more: if preview {
            order_count.saturating_sub(PREVIEW_MAX)
        } else {
            0
        },
        previewed: preview,
        groups,
        values,
        preview: rows,
    };
    render(StatusCode::OK, &page)
}

/// The body of the API's cancel for one channel's orders, from the dialog.
fn cancel_body(values: &CancelValues, group: &ChannelGroup, dry_run: bool) -> Value {
    let mut body = Map::new();
    let mut text = |name: &str, value: &str| {
        if !value.is_empty() {
            body.insert(name.to_owned(), Value::from(value));
        }
    };
    text("reason", &values.reason);
    text("staff_note", &values.staff_note);
    text("reason_detail", &group.detail);
    if let Some(reason) = group.chosen() {
        text("reason_code", &reason.code);
    }
    if let Some(method) = values.refund_method() {
        body.insert("refund_method".to_owned(), Value::from(method));
    }
    body.insert("restock".to_owned(), Value::from(values.restock));
    body.insert("notify_customer".to_owned(), Value::from(values.notify_customer));
    if dry_run {
        body.insert("dry_run".to_owned(), Value::from(true));
    }
    Value::Object(body)
}

async fn preview_row(operator: &Operator, order_id: &str, number: String, currency: &str, body: Value) -> PreviewRow {
    let t = operator.lang.texts();
    let answer = operator
        .api
        .post::<DryRunBody>(&format!("/orders/{}/cancel", segment(order_id)), body, "")
        .await;
    match answer {
        Ok((_, DryRunBody { plan })) => PreviewRow {
            number,
            error: None,
            steps: plan
                .steps
                .iter()
                .map(|step| {
                    (
                        t.step_kind(&step.kind).to_owned(),
                        step.action.clone(),
                        step.fee.as_deref().map(|fee| money(fee, currency)).unwrap_or_default(),
                    )
                })
                .collect(),
            refund_amount: money(&plan.refund_amount, currency),
            restock: plan
                .restock
                .iter()
                .map(|line| format!("{} × {}", line.sku, line.quantity))
                .collect(),
            warnings: plan
                .warnings
                .iter()
                .map(|warning| t.warning(warning).to_owned())
                .collect(),
        },
        Err(failure) => PreviewRow {
            number,
            error: Some(format!(
                "{}: {}",
                t.error_heading(&failure.body.code),
                failure.body.error
            )),
            steps: Vec::new(),
            refund_amount: String::new(),
            restock: Vec::new(),
            warnings: Vec::new(),
        },
    }
}

/// Opens the dialog for the orders ticked on the list (or the one order of a detail page).
pub async fn cancel_dialog(Posted { operator, form }: Posted) -> Response {
    dialog(&operator, &form, true, false, None).await
}

/// The dialog again, with each order's dry run.
pub async fn cancel_preview(Posted { operator, form }: Posted) -> Response {
    dialog(&operator, &form, false, true, None).await
}

/// The problems of a group's reason the console can see before sending: a missing reason code
/// where the channel needs one, and Yahoo!'s 10–200 characters of detail.
fn reason_problems(t: &Texts, groups: &[ChannelGroup]) -> Vec<String> {
    let mut problems = Vec::new();
    for group in groups {
        match group.chosen() {
            None if group.reason_required => problems.push(format!("{}: {}", group.name, t.reason_code_missing)),
            Some(reason) if reason.detail_required && !REASON_DETAIL_CHARS.contains(&group.detail.chars().count()) => {
                problems.push(format!("{}: {}", group.name, t.reason_detail_invalid))
            }
            _ => {}
        }
    }
    problems
}

/// One row of the result screen (W8: a message for the channel, the warehouse and the restock).
pub struct ResultRow {
    pub order_id: String,
    pub number: String,
    pub ok: bool,
    pub status: String,
    pub channel: String,
    pub warehouse: String,
    pub restock: String,
    pub other: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/results.html")]
struct ResultsPage {
    chrome: Chrome,
    rows: Vec<ResultRow>,
    succeeded: usize,
    failed: usize,
}

/// Cancels the selection: one bulk cancel per channel (each with that channel's reason), results in
/// the order the orders were selected.
pub async fn cancel_run(Posted { operator, form }: Posted) -> Response {
    let t = operator.lang.texts();
    let order_ids = selected_orders(&form);
    if order_ids.is_empty() {
        return see_other("/console/orders?notice=nothing_selected");
    }
    let (groups, unreadable) = dialog_groups(&operator, &order_ids, &form).await;
    let problems = reason_problems(t, &groups);
    if !problems.is_empty() {
        let flash = Flash {
            ok: false,
            heading: t.error_heading("invalid_request").to_owned(),
            message: String::new(),
            details: problems,
        };
        return dialog(&operator, &form, false, false, Some(flash)).await;
    }
    let values = CancelValues::from_form(t, &form, false);
    let key = form_key(&form, "cancel");
    let mut rows: HashMap<String, ResultRow> = HashMap::new();
    for group in &groups {
        let mut body = cancel_body(&values, group, false);
        body["order_ids"] = json!(group.orders.iter().map(|(id, _, _)| id).collect::<Vec<_>>());
        let answer = operator
            .api
            .post::<BulkCancelResponse>("/orders/cancel", body, &format!("{key}-{}", group.channel_id))
            .await;
        match answer {
            Ok((_, response)) => {
                for result in response.results {
                    let mut row = ResultRow {
                        number: result.number.clone().unwrap_or_else(|| result.order_id.clone()),
                        order_id: result.order_id.clone(),
                        ok: result.ok,
                        status: result
                            .status
                            .as_deref()
                            .map(|status| t.order_status(status).to_owned())
                            .unwrap_or_default(),
                        channel: String::new(),
                        warehouse: result.warehouse_message.clone().unwrap_or_default(),
                        restock: String::new(),
                        other: Vec::new(),
                    };
                    for message in &result.messages {
                        if let Some(text) = message.strip_prefix("channel: ") {
                            row.channel = text.to_owned();
                        } else if let Some(text) = message.strip_prefix("restock: ") {
                            row.restock = text.to_owned();
                        } else {
                            row.other.push(message.clone());
                        }
                    }
                    rows.insert(result.order_id, row);
                }
            }
            Err(failure) => {
                for (order_id, number, _) in &group.orders {
                    rows.insert(
                        order_id.clone(),
                        ResultRow {
                            order_id: order_id.clone(),
                            number: number.clone(),
                            ok: false,
                            status: String::new(),
                            channel: String::new(),
                            warehouse: String::new(),
                            restock: String::new(),
                            other: vec![format!(
                                "{}: {}",
                                t.error_heading(&failure.body.code),
                                failure.body.error
                            )],
                        },
                    );
                }
            }
        }
    }
    for (order_id, message) in unreadable {
        rows.insert(
            order_id.clone(),
            ResultRow {
                number: order_id.clone(),
                order_id,
                ok: false,
                status: String::new(),
                channel: String::new(),
                warehouse: String::new(),
                restock: String::new(),
                other: vec![message],
            },
        );
    }
    let rows: Vec<ResultRow> = order_ids.iter().filter_map(|id| rows.remove(id)).collect();
    let succeeded = rows.iter().filter(|row| row.ok).count();
    let page = ResultsPage {
        chrome: Chrome::new(&operator, "orders", "/console/orders".to_owned(), None),
        failed: rows.len() - succeeded,
        succeeded,
        rows,
    };
    render(StatusCode::OK, &page)
}

// ---- one order ----

#[derive(Template)]
#[template(path = "console/order.html")]
struct OrderPage {
    chrome: Chrome,
    order: OrderBody,
    channel: String,
    history: Vec<HistoryEntryBody>,
    /// The channel's reasons, for cancelling part of the order.
    group: ChannelGroup,
    refund_methods: Vec<Choice>,
    can_cancel: bool,
    can_cancel_lines: bool,
    can_undo: bool,
    can_record_refund: bool,
    form_key: String,
}

impl OrderPage {
    fn money(&self, amount: &str) -> String {
        money(amount, &self.order.currency)
    }

    fn time(&self, at: &str) -> String {
        display_time(at)
    }

    fn remaining(&self, quantity: &u32, cancelled: &u32) -> u32 {
        quantity.saturating_sub(*cancelled)
    }
}

async fn order_page(operator: &Operator, order_id: &str, status: StatusCode, flash: Option<Flash>) -> Response {
    let t = operator.lang.texts();
    let path = format!("/orders/{}", segment(order_id));
    let order = match operator.api.get::<OrderBody>(&path).await {
        Ok(order) => order,
        Err(failure) => {
            let chrome = Chrome::new(operator, "orders", "/console/orders".to_owned(), None);
            return message_page(
                chrome,
                failure.status,
                t.error_heading(&failure.body.code),
                &failure.body.error,
            );
        }
    };
    let history = operator
        .api
        .get::<HistoryList>(&format!("{path}/history"))
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    let channels = channels_by_id(&operator.api).await;
    let list = reasons(&operator.api, &order.channel_id).await;
    let kind = ChannelKind::parse(&order.channel_kind);
    let cancellation_status = order
        .cancellation
        .as_ref()
        .and_then(|cancellation| CancellationStatus::parse(&cancellation.status));
    let open = order.status == OrderStatus::Open.as_str();
    let page = OrderPage {
        chrome: Chrome::new(
            operator,
            "orders",
            format!("/console/orders/{}", segment(order_id)),
            flash,
        ),
        channel: channel_name(&channels, t, &order.channel_id, &order.channel_kind),
        group: ChannelGroup::of(order.channel_id.clone(), String::new(), &list, operator.lang, "", ""),
        refund_methods: refund_method_choices(t, ""),
        can_cancel: open,
        can_cancel_lines: open && kind.is_some_and(|kind| kind.cancels_lines()),
        can_undo: kind == Some(ChannelKind::OwnStore)
            && matches!(
                cancellation_status,
                Some(CancellationStatus::AwaitingRefund | CancellationStatus::Completed)
            )
            && order
                .cancellation
                .as_ref()
                .is_some_and(|cancellation| cancellation.scope == "order"),
        can_record_refund: matches!(cancellation_status, Some(CancellationStatus::AwaitingRefund)),
        form_key: new_form_token(),
        history,
        order,
    };
    render(status, &page)
}

pub async fn order_detail(operator: Operator, Path(order_id): Path<String>, Query(params): Params) -> Response {
    let flash = notice(operator.lang.texts(), &params);
    order_page(&operator, &order_id, StatusCode::OK, flash).await
}

/// Carries out one order's action, then shows the order: with the notice on success, with what
/// failed otherwise.
async fn order_action(
    operator: &Operator,
    order_id: &str,
    action: &str,
    body: Value,
    key: String,
    done: &str,
) -> Response {
    let path = format!("/orders/{}/{action}", segment(order_id));
    match act(operator, &path, body, &key).await {
        Ok(()) => see_other(&format!("/console/orders/{}?notice={done}", segment(order_id))),
        Err((status, flash)) => order_page(operator, order_id, status, Some(flash)).await,
    }
}

/// Cancels some quantities of some lines (B1).
pub async fn cancel_lines(Path(order_id): Path<String>, Posted { operator, form }: Posted) -> Response {
    let t = operator.lang.texts();
    let mut line_items = Vec::new();
    let mut problems = Vec::new();
    for (line_id, quantity) in form.with_prefix("quantity:") {
        match quantity.parse::<u32>() {
            Ok(0) => {}
            Ok(quantity) => line_items.push(json!({"line_item_id": line_id, "quantity": quantity})),
            Err(_) if quantity.is_empty() => {}
            Err(_) => problems.push(format!("{}: {quantity}", t.cancel_quantity)),
        }
    }
    if line_items.is_empty() && problems.is_empty() {
        problems.push(t.cancel_lines_hint.to_owned());
    }
    if !problems.is_empty() {
        let flash = Flash {
            ok: false,
            heading: t.error_heading("invalid_request").to_owned(),
            message: String::new(),
            details: problems,
        };
        return order_page(&operator, &order_id, StatusCode::BAD_REQUEST, Some(flash)).await;
    }
    let values = CancelValues::from_form(t, &form, false);
    let list = reasons(&operator.api, form.get("channel_id")).await;
    let chosen = form.get("reason_code");
    let group = ChannelGroup::of(
        String::new(),
        String::new(),
        &list,
        operator.lang,
        chosen,
        form.get("reason_detail"),
    );
    let mut body = cancel_body(&values, &group, false);
    if group.chosen().is_none() && !chosen.is_empty() {
        body["reason_code"] = Value::from(chosen);
    }
    body["line_items"] = Value::Array(line_items);
    let key = form_key(&form, "lines");
    order_action(&operator, &order_id, "cancel", body, key, "cancelled").await
}

pub async fn undo(Path(order_id): Path<String>, Posted { operator, form }: Posted) -> Response {
    let body = json!({"force": form.checked("force")});
    let key = form_key(&form, "undo");
    order_action(&operator, &order_id, "uncancel", body, key, "undone").await
}

/// Records a bank transfer made outside rescind (W6).
pub async fn record_refund(Path(order_id): Path<String>, Posted { operator, form }: Posted) -> Response {
    let mut body = json!({"amount": form.get("amount"), "method": "bank_transfer"});
    if !form.get("note").is_empty() {
        body["note"] = Value::from(form.get("note"));
    }
    let key = form_key(&form, "refund");
    order_action(&operator, &order_id, "refunds", body, key, "refund").await
}

// ---- customer requests ----

/// A customer's request with its order and the channel's reasons.
pub struct RequestRow {
    pub request: CancellationRequestBody,
    pub order: Option<OrderBody>,
    pub group: ChannelGroup,
    pub created_at: String,
}

#[derive(Template)]
#[template(path = "console/requests.html")]
struct RequestsPage {
    chrome: Chrome,
    statuses: Vec<Choice>,
    rows: Vec<RequestRow>,
    refund_methods: Vec<Choice>,
    next_page: Option<String>,
    form_key: String,
}

async fn requests_page(
    operator: &Operator,
    params: &HashMap<String, String>,
    status: StatusCode,
    flash: Option<Flash>,
) -> Response {
    let t = operator.lang.texts();
    let chosen = match param(params, "status") {
        "" => "requested",
        "all" => "",
        other => other,
    };
    let limit = LIST_PAGE_SIZE.to_string();
    let query = query_string([
        ("status", chosen),
        ("limit", &limit),
        ("cursor", param(params, "cursor")),
    ]);
    let mut flash = flash;
    let (items, next_cursor) =
        read_list::<CancellationRequestList>(&operator.api, &format!("/cancellation_requests{query}"), t, &mut flash)
            .await;
    let mut reason_lists: HashMap<String, CancelReasonList> = HashMap::new();
    let no_reasons = NO_REASONS;
    let mut rows = Vec::new();
    for request in items {
        let order = operator
            .api
            .get::<OrderBody>(&format!("/orders/{}", segment(&request.order_id)))
            .await
            .ok();
        let channel_id = order.as_ref().map(|order| order.channel_id.clone()).unwrap_or_default();
        if !reason_lists.contains_key(&channel_id) && !channel_id.is_empty() {
            reason_lists.insert(channel_id.clone(), reasons(&operator.api, &channel_id).await);
        }
        let list = reason_lists.get(&channel_id).unwrap_or(&no_reasons);
        rows.push(RequestRow {
            created_at: display_time(&request.created_at),
            group: ChannelGroup::of(channel_id, String::new(), list, operator.lang, "", ""),
            request,
            order,
        });
    }
    let mut statuses = vec![Choice {
        value: "all".to_owned(),
        label: t.all.to_owned(),
        selected: chosen.is_empty(),
    }];
    statuses.extend(choices(
        RequestStatus::names().as_slice(),
        |value| t.request_status(value).to_owned(),
        chosen,
    ));
    let status_param = param(params, "status");
    let page = RequestsPage {
        chrome: Chrome::new(
            operator,
            "requests",
            format!("/console/requests{}", query_string([("status", status_param)])),
            flash,
        ),
        statuses,
        rows,
        refund_methods: t
            .refund_methods()
            .into_iter()
            .map(|(value, label)| Choice {
                value: value.to_owned(),
                label: label.to_owned(),
                selected: false,
            })
            .collect(),
        next_page: next_cursor.map(|cursor| {
            format!(
                "/console/requests{}",
                query_string([("status", status_param), ("cursor", &cursor)])
            )
        }),
        form_key: new_form_token(),
    };
    render(status, &page)
}

pub async fn requests(operator: Operator, Query(params): Params) -> Response {
    let flash = notice(operator.lang.texts(), &params);
    requests_page(&operator, &params, StatusCode::OK, flash).await
}

async fn request_action(
    operator: &Operator,
    request_id: &str,
    action: &str,
    body: Value,
    key: String,
    done: &str,
) -> Response {
    let path = format!("/cancellation_requests/{}/{action}", segment(request_id));
    match act(operator, &path, body, &key).await {
        Ok(()) => see_other(&format!("/console/requests?notice={done}")),
        Err((status, flash)) => requests_page(operator, &HashMap::new(), status, Some(flash)).await,
    }
}

/// Accepts a customer's request with a reason and a refund method: the cancel runs (Q2).
pub async fn accept_request(Path(request_id): Path<String>, Posted { operator, form }: Posted) -> Response {
    let mut body = json!({
        "reason": form.get("reason"),
        "refund_method": form.get("refund_method"),
        "restock": form.checked("restock"),
    });
    for name in ["reason_code", "reason_detail"] {
        if !form.get(name).is_empty() {
            body[name] = Value::from(form.get(name));
        }
    }
    let key = form_key(&form, "accept");
    request_action(&operator, &request_id, "accept", body, key, "accepted").await
}

pub async fn reject_request(Path(request_id): Path<String>, Posted { operator, form }: Posted) -> Response {
    let body = json!({"reason": form.get("reason")});
    let key = form_key(&form, "reject");
    request_action(&operator, &request_id, "reject", body, key, "rejected").await
}

// ---- needs attention ----

#[derive(Template)]
#[template(path = "console/attention.html")]
struct AttentionPage {
    chrome: Chrome,
    items: Vec<CancellationListItem>,
    next_page: Option<String>,
    form_key: String,
}

impl AttentionPage {
    fn time(&self, at: &str) -> String {
        display_time(at)
    }
}

async fn attention_page(operator: &Operator, cursor: &str, status: StatusCode, flash: Option<Flash>) -> Response {
    let t = operator.lang.texts();
    let limit = LIST_PAGE_SIZE.to_string();
    let query = query_string([("needs_attention", "true"), ("limit", &limit), ("cursor", cursor)]);
    let mut flash = flash;
    let (items, next_cursor) =
        read_list::<CancellationList>(&operator.api, &format!("/cancellations{query}"), t, &mut flash).await;
    let page = AttentionPage {
        chrome: Chrome::new(operator, "attention", "/console/attention".to_owned(), flash),
        items,
        next_page: next_cursor
            .map(|cursor| format!("/console/attention{}", query_string([("cursor", cursor.as_str())]))),
        form_key: new_form_token(),
    };
    render(status, &page)
}

pub async fn attention(operator: Operator, Query(params): Params) -> Response {
    let flash = notice(operator.lang.texts(), &params);
    attention_page(&operator, param(&params, "cursor"), StatusCode::OK, flash).await
}

/// Re-drives a cancellation whose step gave up (W7).
pub async fn retry(Path(cancellation_id): Path<String>, Posted { operator, form }: Posted) -> Response {
    let path = format!("/cancellations/{}/retry", segment(&cancellation_id));
    match act(&operator, &path, json!({}), &form_key(&form, "retry")).await {
        Ok(()) => see_other("/console/attention?notice=retried"),
        Err((status, flash)) => attention_page(&operator, "", status, Some(flash)).await,
    }
}

// ---- sync history ----

#[derive(Template)]
#[template(path = "console/sync_history.html")]
struct SyncPage {
    chrome: Chrome,
    kinds: Vec<Choice>,
    results: Vec<Choice>,
    items: Vec<SyncHistoryEntryBody>,
    next_page: Option<String>,
}

impl SyncPage {
    fn time(&self, at: &str) -> String {
        display_time(at)
    }
}

pub async fn sync_history(operator: Operator, Query(params): Params) -> Response {
    let t = operator.lang.texts();
    let kind = param(&params, "kind");
    let result = param(&params, "result");
    let limit = LIST_PAGE_SIZE.to_string();
    let query = query_string([
        ("kind", kind),
        ("result", result),
        ("limit", &limit),
        ("cursor", param(&params, "cursor")),
    ]);
    let mut flash = None;
    let (items, next_cursor) =
        read_list::<SyncHistoryList>(&operator.api, &format!("/sync_history{query}"), t, &mut flash).await;
    let page = SyncPage {
        chrome: Chrome::new(
            &operator,
            "sync_history",
            format!(
                "/console/sync_history{}",
                query_string([("kind", kind), ("result", result)])
            ),
            flash,
        ),
        kinds: choices(
            SyncKind::names().as_slice(),
            |value| t.sync_kind(value).to_owned(),
            kind,
        ),
        results: vec![
            Choice {
                value: "ok".to_owned(),
                label: t.result_success.to_owned(),
                selected: result == "ok",
            },
            Choice {
                value: "error".to_owned(),
                label: t.result_error.to_owned(),
                selected: result == "error",
            },
        ],
        items,
        next_page: next_cursor.map(|cursor| {
            format!(
                "/console/sync_history{}",
                query_string([("kind", kind), ("result", result), ("cursor", &cursor)])
            )
        }),
    };
    render(StatusCode::OK, &page)
}

// ---- inventory ----

#[derive(Template)]
#[template(path = "console/inventory.html")]
struct InventoryPage {
    chrome: Chrome,
    q: String,
    items: Vec<StockBody>,
    next_page: Option<String>,
    form_key: String,
}

impl InventoryPage {
    fn time(&self, at: &str) -> String {
        display_time(at)
    }
}

async fn inventory_page(
    operator: &Operator,
    q: &str,
    cursor: &str,
    status: StatusCode,
    flash: Option<Flash>,
) -> Response {
    let t = operator.lang.texts();
    let limit = LIST_PAGE_SIZE.to_string();
    let query = query_string([("q", q), ("limit", &limit), ("cursor", cursor)]);
    let mut flash = flash;
    let (items, next_cursor) =
        read_list::<StockList>(&operator.api, &format!("/inventory{query}"), t, &mut flash).await;
    let page = InventoryPage {
        chrome: Chrome::new(
            operator,
            "inventory",
            format!("/console/inventory{}", query_string([("q", q)])),
            flash,
        ),
        q: q.to_owned(),
        items,
        next_page: next_cursor
            .map(|cursor| format!("/console/inventory{}", query_string([("q", q), ("cursor", &cursor)]))),
        form_key: new_form_token(),
    };
    render(status, &page)
}

pub async fn inventory(operator: Operator, Query(params): Params) -> Response {
    let flash = notice(operator.lang.texts(), &params);
    inventory_page(
        &operator,
        param(&params, "q"),
        param(&params, "cursor"),
        StatusCode::OK,
        flash,
    )
    .await
}

/// Adjusts a SKU by hand with a reason kept in the stock ledger (I4).
pub async fn adjust_stock(Posted { operator, form }: Posted) -> Response {
    let t = operator.lang.texts();
    let sku = form.get("sku");
    let q = form.get("q");
    let Ok(delta) = form.get("delta").trim_start_matches('+').parse::<i64>() else {
        let failure = ApiFailure::invalid(format!("{}: {}", t.delta, form.get("delta")));
        return inventory_page(
            &operator,
            q,
            "",
            StatusCode::BAD_REQUEST,
            Some(Flash::failed(t, &failure)),
        )
        .await;
    };
    let body = json!({"delta": delta, "reason": form.get("reason")});
    let path = format!("/inventory/{}/adjust", segment(sku));
    match act(&operator, &path, body, &form_key(&form, "adjust")).await {
        Ok(()) => see_other(&format!(
            "/console/inventory{}",
            query_string([("notice", "adjusted"), ("q", q)])
        )),
        Err((status, flash)) => inventory_page(&operator, q, "", status, Some(flash)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_with_their_currency_and_thousands() {
        assert_eq!(money("1200", "JPY"), "¥1,200");
        assert_eq!(money("1234567", "JPY"), "¥1,234,567");
        assert_eq!(money("19.59", "USD"), "$19.59");
        assert_eq!(money("-1000.50", "EUR"), "-1,000.50 EUR");
        assert_eq!(money("999", "JPY"), "¥999");
    }

    #[test]
    fn times_show_to_the_minute_in_utc() {
        assert_eq!(display_time("2026-12-01T10:05:59.123456Z"), "2026-12-01 10:05 UTC");
        assert_eq!(display_time("soon"), "soon");
    }
}
