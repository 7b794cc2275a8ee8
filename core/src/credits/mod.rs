//! Credits: the account ledger (reservations, settlements, fees), the `AccountLedger`
//! Durable Object's operations on it, and the price table.

pub mod ledger;
pub mod ledger_ops;
pub mod pricing;
pub mod settlement;
