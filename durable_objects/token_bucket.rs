//! `TokenBucket`: one per API key (`id_from_name(key_prefix)`), holding the key's bucket state
//! and revoked flag in Durable Object storage; a thin shell over `gateway_core::limits::bucket`.

use std::cell::RefCell;

use gateway_core::limits::bucket::{decide, BucketState};
use serde::{Deserialize, Serialize};

use wasm_bindgen::prelude::*;
use worker::{durable_object, DurableObject, Env, Error, Request, Response, Result, State};

use super::{refuse_fetch, Operations, TakeReply, TakeRequest};

const STATE_KEY: &str = "bucket";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    bucket: Option<BucketState>,
    revoked: bool,
    /// Test hook (set only through the gateway's dev-only route): every decision fails, so
    /// tests can see the gateway fail closed.
    #[serde(default)]
    broken: bool,
}

#[durable_object]
pub struct TokenBucket {
    state: State,
    /// In-memory copy of the stored state (loaded on first use; storage stays the truth
    /// across restarts and evictions).
    cached: RefCell<Option<Stored>>,
}

impl TokenBucket {
    async fn load(&self) -> Result<Stored> {
        if let Some(s) = self.cached.borrow().clone() {
            return Ok(s);
        }
        let stored = self
            .state
            .storage()
            .get::<Stored>(STATE_KEY)
            .await?
            .unwrap_or_default();
        *self.cached.borrow_mut() = Some(stored.clone());
        Ok(stored)
    }

    /// Stores the state, then remembers it: a write that fails leaves the object as stored.
    async fn save(&self, stored: Stored) -> Result<()> {
        self.state.storage().put(STATE_KEY, &stored).await?;
        *self.cached.borrow_mut() = Some(stored);
        Ok(())
    }
}

impl DurableObject for TokenBucket {
    fn new(state: State, _env: Env) -> Self {
        TokenBucket {
            state,
            cached: RefCell::new(None),
        }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        refuse_fetch()
    }
}

export_rpc!(TokenBucket);

impl Operations for TokenBucket {
    async fn operate(&self, path: &str, body: &str) -> Option<Result<String>> {
        Some(match path {
            // A bare round trip, touching neither storage nor state: the baseline of the
            // rate-limit load benchmark (reached only through a dev-only gateway route).
            "/ping" => Ok("{}".into()),
            "/take" => self.take(body).await,
            "/break" => self.mark(|s| s.broken = true, r#"{"broken":true}"#).await,
            "/revoke" => self.mark(|s| s.revoked = true, r#"{"revoked":true}"#).await,
            // A new key took this prefix (its previous key's account was deleted): start over.
            "/reset" => {
                self.mark(|s| *s = Stored::default(), r#"{"reset":true}"#)
                    .await
            }
            _ => return None,
        })
    }
}

impl TokenBucket {
    async fn take(&self, body: &str) -> Result<String> {
        let take: TakeRequest = serde_json::from_str(body)?;
        let now_ms = worker::Date::now().as_millis();
        let mut stored = self.load().await?;
        if stored.broken {
            return Err(Error::RustError("bucket unavailable".into()));
        }
        if stored.revoked {
            return Ok(serde_json::to_string(&TakeReply::Revoked)?);
        }
        let current = stored
            .bucket
            .unwrap_or_else(|| BucketState::full(&take.limits, now_ms));
        let reply = match decide(&current, now_ms, take.cost, &take.limits) {
            Ok((next, decision)) => {
                if decision.is_admitted() || stored.bucket.is_none() {
                    stored.bucket = Some(next);
                    self.save(stored).await?;
                }
                TakeReply::Decided { decision }
            }
            Err(e) => TakeReply::InsufficientCapacity { burst: e.burst },
        };
        Ok(serde_json::to_string(&reply)?)
    }

    /// Sets a flag in the stored state and answers `reply`.
    async fn mark(&self, set: impl FnOnce(&mut Stored), reply: &str) -> Result<String> {
        let mut stored = self.load().await?;
        set(&mut stored);
        self.save(stored).await?;
        Ok(reply.into())
    }
}
