//! The order's history: every state change, with who did it and when (API.md `GET /orders/{id}/history`).

use crate::time::Timestamp;
use std::borrow::Cow;

/// Who caused a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A shop's API token (the merchant's staff, the console or an integration), by token id.
    Token(String),
    /// rescind itself, e.g. a worker completing a step.
    System,
}

impl Actor {
    /// The text stored in the history, e.g. `token:tok_01J…` or `system`.
    pub fn label(&self) -> String {
        match self {
            // Put together, not formatted: a cancellation labels six to ten history lines.
            Actor::Token(id) => ["token:", id.as_str()].concat(),
            Actor::System => "system".to_owned(),
        }
    }
}

/// One line of an order's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: Timestamp,
    /// A stable dotted name, e.g. `order.cancelled`, `step.refund`: borrowed when the change names
    /// it (a cancellation writes six to ten lines), owned when read back.
    pub kind: Cow<'static, str>,
    pub actor: String,
    /// A sentence for people.
    pub message: String,
    /// Machine-readable details: `(key, value)` pairs, rendered as a JSON object at the edge. Keys
    /// and the values that are names (a status, a method) are borrowed, not copied: a cancellation
    /// writes some fifteen pairs.
    pub data: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl HistoryEntry {
    pub fn new(at: Timestamp, kind: impl Into<Cow<'static, str>>, actor: &Actor, message: impl Into<String>) -> Self {
        HistoryEntry {
            at,
            kind: kind.into(),
            actor: actor.label(),
            message: message.into(),
            data: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.data.push((Cow::Borrowed(key), value.into()));
        self
    }
}
