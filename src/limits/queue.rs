//! `Queued<T>`: operations that need no answer before the response, waiting in the isolate per
//! object (an account's ledger, a key's bucket) until a call to that object carries them or a
//! flush sends them. Shared by the ledger and bucket clients; each keeps its own queue and
//! decides how its batches are sent.

use std::collections::BTreeMap;

pub struct Queued<T> {
    /// The operations waiting, per object name, oldest first.
    by_name: BTreeMap<String, Vec<T>>,
    /// Whether a flush is scheduled.
    flush_pending: bool,
}

impl<T> Queued<T> {
    pub const fn new() -> Self {
        Queued {
            by_name: BTreeMap::new(),
            flush_pending: false,
        }
    }

    /// The operations waiting for `name`, oldest last (to add to or merge with).
    pub fn slot(&mut self, name: &str) -> &mut Vec<T> {
        self.by_name.entry(name.to_string()).or_default()
    }

    /// Takes the operations waiting for `name` (a call to it carries them).
    pub fn take(&mut self, name: &str) -> Vec<T> {
        self.by_name.remove(name).unwrap_or_default()
    }

    /// Puts `ops` back ahead of what was queued for `name` meanwhile (a failed send).
    pub fn put_back(&mut self, name: &str, mut ops: Vec<T>) {
        let slot = self.slot(name);
        ops.append(slot);
        *slot = ops;
    }

    /// Marks a flush scheduled; true when none was, so the caller must schedule one.
    pub fn schedule(&mut self) -> bool {
        !std::mem::replace(&mut self.flush_pending, true)
    }

    /// Everything waiting, for the flush that runs now (a later queueing schedules the next).
    pub fn drain(&mut self) -> BTreeMap<String, Vec<T>> {
        self.flush_pending = false;
        std::mem::take(&mut self.by_name)
    }
}
