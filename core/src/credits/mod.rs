//! Credits: the account ledger (reservations, settlements, fees) and the price table.

pub mod ledger;
pub mod pricing;
