// The official Node SDKs (`openai`, `@anthropic-ai/sdk`, pinned in package.json) against the
// gateway's drop-in endpoints, with only their base URL changed, streaming as chat interfaces
// and agents do: `chat.completions.create({stream: true})` iterated, `chat.completions.stream()`
// and `messages.stream()` with their accumulators (`finalChatCompletion`, `finalMessage`) live
// and from the cache, equal to the whole answer of the same request; an error or a cut-off
// upstream mid-stream raised by the SDK (never a clean end); a 429 before the stream retried by
// the SDK after the advertised time; a bad key raised as the SDK's AuthenticationError.
//
// Run by the Rust integration test `dropin::the_official_node_sdks_stream_through_the_gateway`,
// which starts the stack and passes: GATEWAY_URL, GATEWAY_KEY (a fresh live key),
// GATEWAY_KEY_LIMITED_OPENAI and GATEWAY_KEY_LIMITED_ANTHROPIC (keys whose bucket holds one
// token, refilled every second), MOCK_URL, RUN_NONCE (makes prompts unique to this run).
// Prints one line per check and `OK` at the end; exits 1 if any check failed.
import assert from "node:assert/strict";

import Anthropic from "@anthropic-ai/sdk";
import { VERSION as ANTHROPIC_VERSION } from "@anthropic-ai/sdk/version";
import OpenAI from "openai";
import { VERSION as OPENAI_VERSION } from "openai/version";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const URL_ = env("GATEWAY_URL").replace(/\/$/, "");
const KEY = env("GATEWAY_KEY");
const LIMITED_OPENAI = env("GATEWAY_KEY_LIMITED_OPENAI");
const LIMITED_ANTHROPIC = env("GATEWAY_KEY_LIMITED_ANTHROPIC");
const MOCK = env("MOCK_URL").replace(/\/$/, "");
const NONCE = process.env.RUN_NONCE || String(process.hrtime.bigint());
const BAD_KEY = "lvk_live_" + "Z".repeat(43);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// A `fetch` that records the status of every response the SDK got, retries included.
function recording() {
  const statuses = [];
  const fetchFn = async (...args) => {
    const r = await fetch(...args);
    statuses.push(r.status);
    return r;
  };
  return { statuses, fetchFn };
}

const openaiClient = (key, maxRetries = 0, fetchFn = undefined) =>
  new OpenAI({ baseURL: URL_ + "/v1", apiKey: key, maxRetries, timeout: 20_000, fetch: fetchFn });
const anthropicClient = (key, maxRetries = 0, fetchFn = undefined) =>
  new Anthropic({ baseURL: URL_, apiKey: key, maxRetries, timeout: 20_000, fetch: fetchFn });

const chatArgs = (prompt) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: prompt }],
  max_completion_tokens: 64,
});
const messagesArgs = (prompt) => ({
  model: "claude-haiku-4-5",
  max_tokens: 64,
  messages: [{ role: "user", content: prompt }],
});

/// How many calls the mock received whose body contains `contains`.
async function upstreamCalls(contains) {
  const r = await fetch(`${MOCK}/__mock/calls?contains=${encodeURIComponent(contains)}`);
  return (await r.json()).total;
}

/// Iterates `stream` to its end; answers the chunks, or throws what the SDK threw.
async function drain(stream) {
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  return chunks;
}

/// Runs `f` and answers what it threw (fails if it did not throw).
async function thrown(f, what) {
  try {
    await f();
  } catch (e) {
    return e;
  }
  assert.fail(`no error raised: ${what}`);
}

const tests = {
  async openai_stream_reassembles_to_the_whole_answer_and_is_served_from_cache() {
    const c = openaiClient(KEY);
    const prompt = `Stream the capital of France ${NONCE} node-openai-stream`;
    const args = chatArgs(prompt);
    const chunks = await drain(
      await c.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } }),
    );
    const text = chunks.map((ch) => ch.choices[0]?.delta?.content ?? "").join("");
    assert.ok(text.includes("openai"), text);
    const usage = chunks.filter((ch) => ch.usage).map((ch) => ch.usage);
    assert.equal(usage.length, 1, JSON.stringify(chunks));
    assert.ok(usage[0].prompt_tokens > 0 && usage[0].completion_tokens > 0, JSON.stringify(usage));
    assert.deepEqual(chunks.at(-1).choices, [], "the usage chunk comes last, with no choices");
    await sleep(800); // the stream's entry is written when it ends
    // The same request without `stream`: one entry serves both forms.
    const { data: whole, response } = await c.chat.completions.create(args).withResponse();
    assert.match(response.headers.get("cache-status") ?? "", /; hit/);
    assert.equal(whole.choices[0].message.content, text);
    assert.equal(whole.usage.completion_tokens, usage[0].completion_tokens);
    // The stream helper on a hit: the same final message, and no new upstream call.
    const final = await c.chat.completions.stream(args).finalChatCompletion();
    assert.equal(final.choices[0].message.content, text);
    assert.equal(final.choices[0].finish_reason, whole.choices[0].finish_reason);
    assert.equal(await upstreamCalls(prompt), 1, "hits make no upstream call");
  },

  async openai_stream_without_include_usage_has_no_usage_chunk() {
    const c = openaiClient(KEY);
    const chunks = await drain(
      await c.chat.completions.create({ ...chatArgs(`no usage chunk ${NONCE} node`), stream: true }),
    );
    assert.ok(chunks.length > 0);
    assert.ok(chunks.every((ch) => !ch.usage), JSON.stringify(chunks));
    assert.ok(chunks.every((ch) => ch.choices.length > 0), "no chunk without choices");
    assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
  },

  async anthropic_stream_helper_gets_the_final_message_live_and_from_cache() {
    const c = anthropicClient(KEY);
    const prompt = `Stream the capital of France ${NONCE} node-anthropic-stream`;
    const args = messagesArgs(prompt);
    const texts = [];
    const live = await c.messages
      .stream(args)
      .on("text", (t) => texts.push(t))
      .finalMessage();
    assert.ok(live.content[0].text.includes("anthropic"), JSON.stringify(live));
    assert.equal(texts.join(""), live.content[0].text, "the text events add up to the message");
    assert.ok(texts.length > 1, "the text came in several events");
    assert.ok(live.usage.input_tokens > 0 && live.usage.output_tokens > 0, JSON.stringify(live.usage));
    assert.equal(live.stop_reason, "end_turn");
    await sleep(800);
    const cached = await c.messages.stream(args).finalMessage();
    assert.deepEqual(cached, live);
    // The helper's message adds `parsed_output` (null: no structured output asked) and keys it
    // leaves undefined; past those, the whole answer is the same message.
    const { parsed_output, ...streamed } = live;
    assert.equal(parsed_output, null);
    const whole = await c.messages.create(args);
    assert.deepEqual(JSON.parse(JSON.stringify(whole)), JSON.parse(JSON.stringify(streamed)));
    assert.equal(await upstreamCalls(prompt), 1, "hits make no upstream call");
  },

  async anthropic_error_mid_stream_is_raised() {
    const c = anthropicClient(KEY);
    const e = await thrown(
      () => c.messages.stream(messagesArgs(`[[mock:anthropic=stream_error]] ${NONCE} node`)).finalMessage(),
      "a stream that failed mid-way",
    );
    assert.ok(e instanceof Anthropic.APIError, String(e));
    assert.match(String(e), /verloaded/);
  },

  async openai_error_mid_stream_is_raised() {
    const c = openaiClient(KEY);
    const stream = await c.chat.completions.create({
      ...chatArgs(`[[mock:openai=stream_error]] ${NONCE} node`),
      stream: true,
    });
    const seen = [];
    const e = await thrown(async () => {
      for await (const ch of stream) seen.push(ch);
    }, "a stream that failed mid-way");
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.ok(seen.some((ch) => ch.choices[0]?.delta?.content), "content came before the error");
  },

  async a_cut_off_upstream_is_raised_never_a_clean_end() {
    const oc = openaiClient(KEY);
    const stream = await oc.chat.completions.create({
      ...chatArgs(`[[mock:openai=stream_truncate]] ${NONCE} node`),
      stream: true,
    });
    const e = await thrown(() => drain(stream), "an OpenAI stream cut off upstream");
    assert.ok(e instanceof OpenAI.APIError, String(e));
    const ac = anthropicClient(KEY);
    const a = await thrown(
      () => ac.messages.stream(messagesArgs(`[[mock:anthropic=stream_truncate]] ${NONCE} node`)).finalMessage(),
      "an Anthropic stream cut off upstream",
    );
    assert.ok(a instanceof Anthropic.APIError, String(a));
  },

  async openai_stream_retries_a_429_before_the_stream() {
    await retriedAfter429("openai stream", async (fetchFn, retries, prompt) => {
      const c = openaiClient(LIMITED_OPENAI, retries, fetchFn);
      const chunks = await drain(await c.chat.completions.create({ ...chatArgs(prompt), stream: true }));
      return chunks.map((ch) => ch.choices[0]?.delta?.content ?? "").join("");
    });
  },

  async anthropic_stream_retries_a_429_before_the_stream() {
    await retriedAfter429("anthropic stream", async (fetchFn, retries, prompt) => {
      const c = anthropicClient(LIMITED_ANTHROPIC, retries, fetchFn);
      return (await c.messages.stream(messagesArgs(prompt)).finalMessage()).content[0].text;
    });
  },

  async a_bad_key_is_an_authentication_error_before_the_stream() {
    const o = await thrown(
      async () => drain(await openaiClient(BAD_KEY).chat.completions.create({ ...chatArgs("nope"), stream: true })),
      "OpenAI, bad key",
    );
    assert.ok(o instanceof OpenAI.AuthenticationError, String(o));
    assert.equal(o.status, 401);
    const a = await thrown(
      () => anthropicClient(BAD_KEY).messages.stream(messagesArgs("nope")).finalMessage(),
      "Anthropic, bad key",
    );
    assert.ok(a instanceof Anthropic.AuthenticationError, String(a));
    assert.equal(a.status, 401);
    assert.equal(a.error?.error?.type, "authentication_error", JSON.stringify(a.error));
  },
};

/// Takes the key's one token with a first call, then streams a second at once: the gateway
/// answers 429 with retry-after(-ms) before any event, the SDK waits that long, retries and
/// streams the answer. Tries a few times in case the token had already come back.
async function retriedAfter429(label, call) {
  for (let attempt = 0; attempt < 4; attempt++) {
    await sleep(1100); // the token of an earlier check comes back
    await call(undefined, 0, `${label} drain ${attempt} ${NONCE}`);
    const { statuses, fetchFn } = recording();
    const started = performance.now();
    const text = await call(fetchFn, 3, `${label} retried ${attempt} ${NONCE}`);
    const elapsed = (performance.now() - started) / 1000;
    assert.ok(text, "the retried stream answered text");
    assert.equal(statuses.at(-1), 200, String(statuses));
    if (statuses.includes(429)) {
      assert.ok(elapsed >= 0.2, `retried after ${elapsed.toFixed(3)} s: sooner than advertised`);
      assert.ok(elapsed < 5, `retried after ${elapsed.toFixed(3)} s`);
      console.log(`     ${label}: statuses ${statuses.join(",")}, succeeded after ${elapsed.toFixed(2)} s`);
      return;
    }
  }
  assert.fail(`${label}: never saw a 429 to retry`);
}

console.log(`openai ${OPENAI_VERSION}, @anthropic-ai/sdk ${ANTHROPIC_VERSION}, gateway ${URL_}`);
const failed = [];
for (const [name, test] of Object.entries(tests)) {
  try {
    await test();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed.push(name);
    console.log(`FAIL ${name}\n${e?.stack ?? e}`);
  }
}
if (failed.length) {
  console.log(`${failed.length} of ${Object.keys(tests).length} Node SDK checks failed: ${failed.join(", ")}`);
  process.exit(1);
}
console.log(`OK: ${Object.keys(tests).length} Node SDK checks passed`);
