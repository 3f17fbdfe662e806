//! The scopes an API token can hold (API.md "Scopes").

crate::named_enum! {
    /// One permission of a shop's API token.
    pub enum Scope {
        ReadOrder => "read_order",
        WriteOrder => "write_order",
        ReadInventory => "read_inventory",
        WriteInventory => "write_inventory",
        WriteSettings => "write_settings",
    }
}
