//! What is recorded about calls: usage rows and their packing into D1-sized values, and the
//! one structured log line per request.

pub mod log_line;
pub mod packing;
pub mod rows;
