//! Warehouses (3PL): one module per warehouse system.

pub mod openlogi;
pub mod pacing;
