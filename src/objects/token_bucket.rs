//! `TokenBucket`: one per API key (`id_from_name(key_prefix)`), holding the key's bucket state
//! and revoked flag in Durable Object storage; a thin shell over
//! `gateway_core::limits::bucket_ops` (operations, replies, `KeyBucket::take`).

use gateway_core::limits::bucket_ops::{BucketOp, KeyBucket, TakeReply};
use gateway_core::limits::tier::Limits;
use wasm_bindgen::prelude::*;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::{refuse_fetch, reply, Operations, StoredCell};

#[durable_object]
pub struct TokenBucket {
    key: StoredCell<KeyBucket>,
}

impl DurableObject for TokenBucket {
    fn new(state: State, _env: Env) -> Self {
        TokenBucket {
            key: StoredCell::new(&state, "bucket"),
        }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        refuse_fetch()
    }
}

export_rpc!(TokenBucket);

impl Operations for TokenBucket {
    type Op = BucketOp;

    async fn operate(&self, op: BucketOp) -> Result<String> {
        match op {
            BucketOp::Take { cost, limits } => reply(&self.take(cost, &limits).await?),
            BucketOp::Revoke => self.mark(|k| k.revoked = true).await,
            BucketOp::Reset => self.mark(|k| *k = KeyBucket::default()).await,
            #[cfg(feature = "dev-hooks")]
            BucketOp::Break => self.mark(|k| k.broken = true).await,
            // Touches neither storage nor state.
            #[cfg(feature = "dev-hooks")]
            BucketOp::Ping => reply(&()),
        }
    }
}

impl TokenBucket {
    async fn take(&self, cost: u32, limits: &Limits) -> Result<TakeReply> {
        let now_ms = worker::Date::now().as_millis();
        let mut key = self.key.load().await?;
        #[cfg(feature = "dev-hooks")]
        if key.broken {
            return Err(worker::Error::RustError("bucket unavailable".into()));
        }
        let (reply, changed) = key.take(cost, limits, now_ms);
        if changed {
            self.key.save(key).await?;
        }
        Ok(reply)
    }

    /// Changes the stored record with `set` and answers `null`.
    async fn mark(&self, set: impl FnOnce(&mut KeyBucket)) -> Result<String> {
        let mut key = self.key.load().await?;
        set(&mut key);
        self.key.save(key).await?;
        reply(&())
    }
}
