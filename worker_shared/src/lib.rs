//! What the two Worker crates (the gateway and the provider broker) share at the runtime edge:
//! the clock, reading bodies, subrequests answered with the runtime's own `Response`, running
//! D1 statements, reading vars and secrets, replying a contract error, timers kept across
//! awaits.
//! Thin adapters over `worker`; the logic they serve lives in `gateway-core`.

pub mod body;
pub mod clock;
pub mod d1;
pub mod env;
pub mod fetch;
pub mod reply;
pub mod timer;
