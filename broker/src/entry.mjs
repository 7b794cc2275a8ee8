// The broker Worker's entry module: the module worker-build generates, plus the Workers RPC
// method the gateway calls, `complete(secret, body)` (broker/src/lib.rs, `broker_complete`).
// worker-build attaches every wasm export to the entry class as is; this one needs the Worker's
// `env`, so it is wrapped, and the raw export is removed so no caller can hand in an `env` of
// its own. scripts/build.sh copies this file next to the generated shim.
import Broker from "./shim.mjs";

export * from "./shim.mjs";
export { default } from "./shim.mjs";

const complete = Broker.prototype.broker_complete;
delete Broker.prototype.broker_complete;
Broker.prototype.complete = function (secret, body) {
  return complete(this.env, String(secret), String(body));
};
