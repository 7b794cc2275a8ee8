// The load benchmark's reference Worker (scripts/bench.sh, section d): what the local runtime
// itself allows a Cache API hit, with no gateway code at all. GET /healthz is its bare route;
// PUT /hit/<key> stores the request body under https://cache.internal/ref/<key> in
// caches.default, and GET /hit/<key> reads it back and answers the stored text, as an L1 hit
// of the gateway answers its stored results. POST /hit/<key> does the same after reading the
// request body, as a POST /v1/ask hit has to.
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") return Response.json({ ok: true });
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
