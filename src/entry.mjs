// The gateway Worker's entry module: the module worker-build generates, with its Durable Object
// classes made to derive from `DurableObject`. The runtime serves Workers RPC only to such
// classes, and the gateway calls its objects by RPC (`rpc(op)`, src/objects/mod.rs).
// scripts/build.sh copies this file next to the generated shim.
import { DurableObject } from "cloudflare:workers";
import * as generated from "./shim.mjs";

export * from "./shim.mjs";
export { default } from "./shim.mjs";

for (const name of ["TokenBucket", "AccountLedger"]) {
  const cls = generated[name];
  Object.setPrototypeOf(cls.prototype, DurableObject.prototype);
  Object.setPrototypeOf(cls, DurableObject);
}

// The gateway reads nothing of `request.cf`, but the worker crate's request conversion reads it
// eagerly, and the runtime builds that object anew for every request it is read on (about
// 0.09 ms a request on the local runtime; docs/DECISIONS.md, "The request's cf object"): the
// request handed to wasm has it shadowed by an own `undefined`.
const fetch = generated.default.prototype.fetch;
generated.default.prototype.fetch = function (request) {
  Object.defineProperty(request, "cf", { value: undefined });
  return fetch.call(this, request);
};
