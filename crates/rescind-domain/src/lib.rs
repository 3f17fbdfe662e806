//! The pure core of rescind: money, orders, cancellations, refunds, and the rules of PRODUCT.md that
//! decide what a cancel does.
//!
//! Nothing in this crate performs I/O, reads the clock or knows a wire format: time and fresh ids are
//! passed in, decisions come out as plain values that the store persists and the HTTP layer renders.

pub mod access;
pub mod cancel;
pub mod channel;
pub mod events;
pub mod history;
pub mod ids;
pub mod inventory;
pub mod money;
pub mod order;
pub mod reasons;
pub mod refund;
pub mod request;
pub mod time;
pub mod undo;
pub mod warehouse;
pub mod workflow;

pub use access::Scope;
pub use cancel::{
    cancelled_at_channel, plan_cancellation, CancelError, CancelOptions, CancelPlan, Cancellation, CancellationStatus,
    PlannedStep, RequestedBy, Step, StepKind, StepStatus,
};
pub use channel::{ChannelKind, PaymentProviderKind};
pub use events::{event_type, EventType};
pub use history::{Actor, HistoryEntry};
pub use ids::IdSource;
pub use inventory::{StockMove, StockMoveKind};
pub use money::{Currency, Money, MoneyError};
pub use order::{
    Address, Customer, FinancialStatus, FulfillmentStatus, LineItem, NewLineItem, NewOrder, Order, OrderChange,
    OrderStatus, Payment, PaymentMethod, SyncKind, SyncRecord, Warning, WorkflowSchedule,
};
pub use reasons::{cancel_reasons, check_reason, reason_code_required, CancelReason, ReasonGroup};
pub use refund::{record_refund, Refund, RefundError, RefundMethod, RefundRequest};
pub use request::{
    accept_request, reject_request, request_cancellation, CancellationRequest, RequestError, RequestStatus,
};
pub use time::Timestamp;
pub use undo::{plan_undo, record_reauthorization_declined, undo_cancellation, Reauthorization, UndoError};
pub use warehouse::{
    modify_order, plan_modification, warehouse_event, EventError, ModificationRoute, ModificationSync, ModifyError,
    Outbound, OutboundStatus, WarehouseEvent, WarehouseKind, WarehouseSettings,
};
pub use workflow::{
    pending_work, record_step_outcome, record_step_outcomes, retry_cancellation, ChannelCall, ChannelLine,
    PaymentAction, PaymentCall, PendingWork, RetryError, RetryPolicy, StaleStep, StepOutcome,
};

/// Declares a closed set of string-named values: the enum, its wire name, its parser and the list
/// of every value. Wire names are fixed by API.md, so they live next to the variants.
#[macro_export]
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name API.md gives this value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the API name; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The API names of every value, for error messages and schemas.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|value| value.as_str()).collect()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
