// The broker Worker's entry module: the module worker-build generates, plus the Workers RPC
// method the gateway calls, `complete(secret, body)` (broker/src/lib.rs, `broker_complete`).
// worker-build attaches every wasm export to the entry class as is; this one needs the Worker's
// `env`, so it is wrapped, and the raw export is removed so no caller can hand in an `env` of
// its own. scripts/build.sh copies this file next to the generated shim.
import Broker from "./shim.mjs";

export * from "./shim.mjs";
export { default } from "./shim.mjs";

// What may cross into wasm before the secret is checked: a body longer than the broker's
// limit in UTF-16 units is over it in bytes too (BROKER_BODY_LIMIT, core/src/broker.rs), and
// is not copied: it is refused as too large once the secret has passed. A secret longer than
// any real one is not copied either (it is wrong).
const BODY_LIMIT = 320 * 1024;
const SECRET_LIMIT = 1024;

const complete = Broker.prototype.broker_complete;
delete Broker.prototype.broker_complete;
Broker.prototype.complete = function (secret, body) {
  const given = typeof secret === "string" && secret.length <= SECRET_LIMIT ? secret : "";
  const fits = typeof body === "string" && body.length <= BODY_LIMIT;
  return complete(this.env, given, fits ? body : "", !fits);
};

// The broker reads nothing of `request.cf`, but the worker crate's request conversion reads it
// eagerly, and the runtime builds that object anew for every request it is read on (about
// 0.09 ms a request on the local runtime; docs/DECISIONS.md, "The request's cf object"): the
// request handed to wasm has it shadowed by an own `undefined`.
const fetch = Broker.prototype.fetch;
Broker.prototype.fetch = function (request) {
  Object.defineProperty(request, "cf", { value: undefined });
  return fetch.call(this, request);
};
