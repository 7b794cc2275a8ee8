//! `StoredCell<T>`: the one value a Durable Object keeps in its storage under one key, with an
//! in-memory copy. Storage stays the truth across restarts and evictions; the copy saves a read
//! per call while the object lives.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Result, State, Storage};

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
        let value = self.storage.get::<T>(self.key).await?.unwrap_or_default();
        *self.memory.borrow_mut() = Some(value.clone());
        Ok(value)
    }

    /// Stores `value`, then remembers it: a write that fails leaves the object as stored.
    pub async fn save(&self, value: T) -> Result<()> {
        self.storage.put(self.key, &value).await?;
        *self.memory.borrow_mut() = Some(value);
        Ok(())
    }

    /// Deletes everything the object stores (this key and any other), then remembers the
    /// default value.
    pub async fn wipe(&self) -> Result<()> {
        self.storage.delete_all().await?;
        *self.memory.borrow_mut() = Some(T::default());
        Ok(())
    }
}
