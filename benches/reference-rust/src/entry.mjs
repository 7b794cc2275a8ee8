// The Rust reference's entry module (benches/reference-rust): the module worker-build generates,
// with its Durable Object class made to derive from `DurableObject` (the runtime serves Workers
// RPC only to such classes) and the request's `cf` shadowed, as the gateway's entry does
// (src/entry.mjs). scripts/bench.sh copies this file next to the generated shim.
import { DurableObject } from "cloudflare:workers";
import * as generated from "./shim.mjs";

export * from "./shim.mjs";
export { default } from "./shim.mjs";

Object.setPrototypeOf(generated.RefObject.prototype, DurableObject.prototype);
Object.setPrototypeOf(generated.RefObject, DurableObject);

const fetch = generated.default.prototype.fetch;
generated.default.prototype.fetch = function (request) {
  Object.defineProperty(request, "cf", { value: undefined });
  return fetch.call(this, request);
};
