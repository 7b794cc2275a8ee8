//! Shared helpers of the benches and the HTTP load tool.
