//! `StoredCell<T>`: the one value a Durable Object keeps in its storage under one key, with an
//! in-memory copy. Storage stays the truth across restarts and evictions; the copy saves a read
//! per call while the object lives. `ExpiryAlarm`: the object's alarm at the next deadline of
//! its open reservations.

use std::cell::{Cell, RefCell};

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{js_sys, wasm_bindgen::JsValue, Result, ScheduledTime, State, Storage};

pub struct StoredCell<T> {
    storage: Storage,
    key: &'static str,
    /// What storage holds under `key`, once read or written by this instance.
    memory: RefCell<Option<T>>,
}

impl<T: Clone + Default + Serialize + DeserializeOwned> StoredCell<T> {
    /// The value the object `state` stores under `key` (read on first use).
    pub fn new(state: &State, key: &'static str) -> Self {
        StoredCell {
            storage: state.storage(),
            key,
            memory: RefCell::new(None),
        }
    }

    /// The value: the in-memory copy, or on first use what storage holds (the default when
    /// nothing is stored yet).
    pub async fn load(&self) -> Result<T> {
        if let Some(value) = self.memory.borrow().clone() {
            return Ok(value);
        }
        // Read as the runtime holds it, to tell the two forms apart.
        let found = self.storage.get_multiple(vec![self.key]).await?;
        let stored = found.get(&JsValue::from_str(self.key));
        let value = if stored.is_undefined() {
            T::default()
        } else if let Some(text) = stored.as_string() {
            // The form written since 2026-12-07: the value's JSON text.
            serde_json::from_str(&text).map_err(|e| self.error("reading", e))?
        } else {
            // The form written before: the value as a JavaScript object (what `Storage::put`
            // writes), read as `Storage::get` reads it.
            serde_wasm_bindgen::from_value(stored).map_err(|e| self.error("reading", e))?
        };
        *self.memory.borrow_mut() = Some(value.clone());
        Ok(value)
    }

    /// Stores `value` as its JSON text, then remembers it: a write that fails leaves the object
    /// as stored. One string crosses into JavaScript and is cloned by the runtime, where the
    /// value as an object took a call per field and number (docs/DECISIONS.md, "Durable Object
    /// state stored as JSON text").
    pub async fn save(&self, value: T) -> Result<()> {
        let text = serde_json::to_string(&value).map_err(|e| self.error("storing", e))?;
        self.storage
            .put_raw(self.key, JsValue::from_str(&text))
            .await?;
        *self.memory.borrow_mut() = Some(value);
        Ok(())
    }

    /// The value under `key` could not be read or written (`doing` says which).
    fn error(&self, doing: &str, e: impl std::fmt::Display) -> worker::Error {
        worker::Error::RustError(format!("{doing} {}: {e}", self.key))
    }

    /// Test hook: forgets the in-memory copy, so the next [`load`](Self::load) reads what
    /// storage holds, as a new instance would; with `old_form`, first stores the value again in
    /// the form written before 2026-12-07 (what `Storage::put` writes: the value as a
    /// JavaScript object). Answers the value as it stands.
    #[cfg(feature = "dev-hooks")]
    pub async fn reread(&self, old_form: bool) -> Result<T> {
        let value = self.load().await?;
        if old_form {
            self.storage.put(self.key, &value).await?;
        }
        *self.memory.borrow_mut() = None;
        Ok(value)
    }

    /// Deletes everything the object stores (this key and any other), then remembers the
    /// default value.
    pub async fn wipe(&self) -> Result<()> {
        self.storage.delete_all().await?;
        *self.memory.borrow_mut() = Some(T::default());
        Ok(())
    }
}

/// The object's alarm, set for the earliest deadline of its open reservations (which expire at
/// their reserved amount, so a reservation whose isolate was lost is never free, even if the
/// object is never called again). Setting it is a storage operation, so it is set only when no
/// alarm this instance set is due at or before that deadline; after an eviction the first
/// reservation sets it again (the earliest deadline open, so nothing is missed).
pub struct ExpiryAlarm {
    storage: Storage,
    /// When the alarm this instance set last is due, ms (`None`: none set, or it fired).
    due_ms: Cell<Option<u64>>,
}

impl ExpiryAlarm {
    pub fn new(state: &State) -> Self {
        ExpiryAlarm {
            storage: state.storage(),
            due_ms: Cell::new(None),
        }
    }

    /// Makes sure the alarm runs at or before `next_ms` (the earliest open deadline).
    pub async fn ensure(&self, next_ms: Option<u64>) -> Result<()> {
        let Some(at) = next_ms else { return Ok(()) };
        if self.due_ms.get().is_some_and(|due| due <= at) {
            return Ok(());
        }
        let date = js_sys::Date::new(&JsValue::from_f64(at as f64));
        self.storage.set_alarm(ScheduledTime::new(date)).await?;
        self.due_ms.set(Some(at));
        Ok(())
    }

    /// The alarm ran: none is pending until the next `ensure`.
    pub fn fired(&self) {
        self.due_ms.set(None);
    }
}
