//! `TokenBucket`: one per API key (`id_from_name(key_prefix)`), holding the key's call bucket,
//! its token buckets with their open reservations, and its revoked flag in Durable Object
//! storage; a thin shell over `gateway_core::limits::bucket_ops` (operations, replies,
//! `KeyBucket`). Its alarm closes the reservations never settled, at their reserved amount.

use gateway_core::limits::bucket_ops::{BucketOp, KeyBucket, TakeReply};
use gateway_core::limits::tier::Limits;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::{refuse_fetch, reply, ExpiryAlarm, Operations, StoredCell};

#[durable_object]
pub struct TokenBucket {
    key: StoredCell<KeyBucket>,
    alarm: ExpiryAlarm,
}

impl DurableObject for TokenBucket {
    fn new(state: State, _env: Env) -> Self {
        TokenBucket {
            key: StoredCell::new(&state, "bucket"),
            alarm: ExpiryAlarm::new(&state),
        }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        refuse_fetch()
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm.fired();
        let now_ms = worker_shared::clock::now_ms();
        let mut key = self.key.load().await?;
        if key.expire(now_ms) {
            self.key.save(key.clone()).await?;
        }
        self.alarm.ensure(key.next_expiry()).await?;
        Response::ok("")
    }
}

export_rpc!(TokenBucket);

impl Operations for TokenBucket {
    type Op = BucketOp;

    async fn operate(&self, op: BucketOp) -> Result<String> {
        match op {
            BucketOp::Take { cost, limits } => reply(&self.take(cost, &limits).await?),
            BucketOp::Reserve {
                id,
                limits,
                tokens,
                input_tokens,
                output_tokens,
                settled,
            } => {
                self.update(|k, now| {
                    let settled_changed = k.settle_all(&settled, now);
                    let (reply, changed) =
                        k.reserve(&id, &limits, &tokens, input_tokens, output_tokens, now);
                    (reply, changed || settled_changed)
                })
                .await
            }
            BucketOp::SettleAll { settled } => {
                self.update(|k, now| ((), k.settle_all(&settled, now)))
                    .await
            }
            BucketOp::Release { id, tokens } => {
                self.update(|k, now| k.release(&id, &tokens, now)).await
            }
            BucketOp::Revoke => self.mark(|k| k.revoked = true).await,
            BucketOp::Reset => self.mark(|k| *k = KeyBucket::default()).await,
            #[cfg(feature = "dev-hooks")]
            BucketOp::Break => self.mark(|k| k.broken = true).await,
            // Touches neither storage nor state.
            #[cfg(feature = "dev-hooks")]
            BucketOp::Ping => reply(&()),
            #[cfg(feature = "dev-hooks")]
            BucketOp::Reread { old_form } => {
                self.key.reread(old_form).await?;
                reply(&())
            }
        }
    }
}

impl TokenBucket {
    async fn take(&self, cost: u32, limits: &Limits) -> Result<TakeReply> {
        let now_ms = worker_shared::clock::now_ms();
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

    /// Applies `op` to the stored record at the clock's time (`op` says whether it changed the
    /// record), stores it if so, keeps the expiry alarm set, and answers `op`'s reply.
    async fn update<R: Serialize>(
        &self,
        op: impl FnOnce(&mut KeyBucket, u64) -> (R, bool),
    ) -> Result<String> {
        let now_ms = worker_shared::clock::now_ms();
        let mut key = self.key.load().await?;
        #[cfg(feature = "dev-hooks")]
        if key.broken {
            return Err(worker::Error::RustError("bucket unavailable".into()));
        }
        let (answer, changed) = op(&mut key, now_ms);
        let next = key.next_expiry();
        if changed {
            self.key.save(key).await?;
        }
        self.alarm.ensure(next).await?;
        reply(&answer)
    }

    /// Changes the stored record with `set` and answers `null`.
    async fn mark(&self, set: impl FnOnce(&mut KeyBucket)) -> Result<String> {
        let mut key = self.key.load().await?;
        set(&mut key);
        self.key.save(key).await?;
        reply(&())
    }
}
