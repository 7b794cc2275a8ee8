//! `TokenBucket`: one per API key (`id_from_name(key_prefix)`), holding the key's bucket state
//! and revoked flag in Durable Object storage; a thin shell over `gateway_core::bucket`.

use std::cell::RefCell;

use gateway_core::bucket::{decide, BucketState};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State};

use super::{TakeReply, TakeRequest};

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

    async fn save(&self, stored: Stored) -> Result<()> {
        *self.cached.borrow_mut() = Some(stored.clone());
        self.state.storage().put(STATE_KEY, &stored).await
    }
}

impl DurableObject for TokenBucket {
    fn new(state: State, _env: Env) -> Self {
        TokenBucket {
            state,
            cached: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.method() != Method::Post {
            return Response::error("method not allowed", 405);
        }
        match req.path().as_str() {
            // A bare round trip, touching neither storage nor state: the baseline of the
            // rate-limit load benchmark (reached only through a dev-only gateway route).
            "/ping" => Response::from_json(&serde_json::json!({})),
            "/take" => {
                let take: TakeRequest = req.json().await?;
                let now_ms = worker::Date::now().as_millis();
                let mut stored = self.load().await?;
                if stored.broken {
                    return Response::error("bucket unavailable", 500);
                }
                if stored.revoked {
                    return Response::from_json(&TakeReply::Revoked);
                }
                let current = stored
                    .bucket
                    .unwrap_or_else(|| BucketState::full(&take.limits, now_ms));
                match decide(&current, now_ms, take.cost, &take.limits) {
                    Ok((next, decision)) => {
                        if decision.is_admitted() || stored.bucket.is_none() {
                            stored.bucket = Some(next);
                            self.save(stored).await?;
                        }
                        Response::from_json(&TakeReply::Decided { decision })
                    }
                    Err(e) => {
                        Response::from_json(&TakeReply::InsufficientCapacity { burst: e.burst })
                    }
                }
            }
            "/break" => {
                let mut stored = self.load().await?;
                stored.broken = true;
                self.save(stored).await?;
                Response::from_json(&serde_json::json!({"broken": true}))
            }
            "/revoke" => {
                let mut stored = self.load().await?;
                stored.revoked = true;
                self.save(stored).await?;
                Response::from_json(&serde_json::json!({"revoked": true}))
            }
            _ => Response::error("not found", 404),
        }
    }
}
