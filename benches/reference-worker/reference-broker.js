// The reference broker (scripts/bench.sh, section d): the outbound fetch of the reference
// Worker's POST /miss, to the URL in its `x-upstream` header, with the body read whole (a broker
// checks it before it calls upstream); the upstream's response goes back as it is (its body not
// read).
export default {
  async fetch(request) {
    return fetch(request.headers.get("x-upstream"), {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer reference" },
      body: await request.text(),
    });
  },
};
