//! What is recorded about calls: usage rows and their packing into D1-sized values.

pub mod packing;
pub mod rows;
