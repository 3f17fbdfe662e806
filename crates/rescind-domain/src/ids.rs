//! Fresh identifiers are made at the edge (they need randomness); decisions that create records take
//! an [`IdSource`] so tests can hand out predictable ones.

/// Hands out new, unique, opaque ids such as `ord_01J…`.
pub trait IdSource {
    /// A new id starting with `prefix` and an underscore.
    fn new_id(&mut self, prefix: &'static str) -> String;
}

/// Counts up: `can_1`, `can_2`, … For tests and examples.
#[derive(Debug, Default)]
pub struct SequentialIds(u64);

impl IdSource for SequentialIds {
    fn new_id(&mut self, prefix: &'static str) -> String {
        self.0 += 1;
        format!("{prefix}_{}", self.0)
    }
}
