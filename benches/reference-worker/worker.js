// The load benchmark's reference Worker (scripts/bench.sh, section d): what the local
// runtime itself allows, with no gateway code at all.
// - GET /healthz is its bare route.
// - PUT /hit/<key> stores the request body under https://cache.internal/ref/<key> in
//   caches.default; GET /hit/<key> reads it back and answers the stored text, as an L1 hit of
//   the gateway answers its stored results; POST /hit/<key> does the same after reading the
//   request body, as a POST /v1/ask hit has to.
// - POST /miss is the contract's miss topology with nothing else: the request body read, two
//   Durable Object round trips at once (each with one storage write, as the key's bucket and the
//   account's ledger reserve), then one service-binding call to a broker Worker
//   (reference-broker.js) that makes the outbound fetch named by the `x-upstream` header and
//   hands back its response, whose body (a JSON answer or an event stream) is passed on as it
//   arrives: the runtime's own floor under a miss and a streamed miss's first event.
import { DurableObject } from "cloudflare:workers";

export class RefObject extends DurableObject {
  async bump() {
    const n = (this.n ?? 0) + 1;
    this.n = n;
    this.ctx.storage.put("n", n);
    return n;
  }
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") return Response.json({ ok: true });
    if (path === "/miss" && request.method === "POST") {
      const body = await request.text();
      const one = (name) => env.REF_OBJECT.get(env.REF_OBJECT.idFromName(name)).bump();
      await Promise.all([one("key"), one("account")]);
      return env.BROKER.fetch("https://broker/call", {
        method: "POST",
        headers: { "Content-Type": "application/json", "x-upstream": request.headers.get("x-upstream") ?? "" },
        body,
      });
    }
    const m = path.match(/^\/hit\/([0-9a-f]{1,64})$/);
    if (!m) return Response.json({ error: "not_found" }, { status: 404 });
    const key = `https://cache.internal/ref/${m[1]}`;
    if (request.method === "PUT") {
      const stored = new Response(await request.text(), {
        headers: { "Content-Type": "application/json", "Cache-Control": "max-age=86400" },
      });
      await caches.default.put(key, stored);
      return Response.json({ stored: true });
    }
    if (request.method === "POST") await request.text();
    const hit = await caches.default.match(key);
    if (!hit) return Response.json({ error: "miss" }, { status: 404 });
    return new Response(await hit.text(), { headers: { "Content-Type": "application/json" } });
  },
};
