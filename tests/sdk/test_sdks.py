#!/usr/bin/env python3
"""The official OpenAI and Anthropic Python SDKs against the gateway's drop-in endpoints, with
only their base URL changed: a plain call, a cache hit on the repeat (the Cache-Status header),
a 429 the SDK retries after the advertised time and then succeeds, a 401 surfaced as the SDK's
AuthenticationError, and streaming: the SDKs' stream helpers reassemble a live stream and a
cached one into the same final message, which equals the whole answer of the same request.

Run by the Rust integration test `dropin::the_official_python_sdks_work_through_the_gateway`,
which starts the stack and passes: GATEWAY_URL, GATEWAY_KEY (a fresh live key),
GATEWAY_KEY_LIMITED_OPENAI and GATEWAY_KEY_LIMITED_ANTHROPIC (keys whose bucket holds one
token, refilled every second), GATEWAY_KEY_TOKENS_OPENAI and GATEWAY_KEY_TOKENS_ANTHROPIC (keys
with 60,000 input tokens a minute), RUN_NONCE (makes prompts unique to this run).
Prints one line per check and `OK` at the end; exits 1 if any check failed (`checks.run`).
"""
import os
import time

import anthropic
import openai

import checks

URL = os.environ["GATEWAY_URL"].rstrip("/")
KEY = os.environ["GATEWAY_KEY"]
LIMITED_OPENAI = os.environ["GATEWAY_KEY_LIMITED_OPENAI"]
LIMITED_ANTHROPIC = os.environ["GATEWAY_KEY_LIMITED_ANTHROPIC"]
TOKENS_OPENAI = os.environ["GATEWAY_KEY_TOKENS_OPENAI"]
TOKENS_ANTHROPIC = os.environ["GATEWAY_KEY_TOKENS_ANTHROPIC"]
NONCE = os.environ.get("RUN_NONCE") or str(time.time_ns())
BAD_KEY = "lvk_live_" + "Z" * 43


def openai_client(key, retries=0):
    return openai.OpenAI(base_url=URL + "/v1", api_key=key, max_retries=retries, timeout=20)


def anthropic_client(key, retries=0):
    return anthropic.Anthropic(base_url=URL, api_key=key, max_retries=retries, timeout=20)


def chat_args(prompt):
    return dict(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        max_completion_tokens=64,
    )


def messages_args(prompt):
    return dict(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": prompt}],
    )


def test_openai_plain_call_then_cache_hit():
    c = openai_client(KEY)
    args = chat_args(f"What is the capital of France? {NONCE} openai")
    first_raw = c.chat.completions.with_raw_response.create(**args)
    # OpenAI's own rate-limit headers on a miss, as its SDK users read them (a hit takes no
    # token: it carries the limits only).
    for name in ("x-ratelimit-limit-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"):
        assert first_raw.headers.get(name), f"{name} missing: {dict(first_raw.headers)}"
    first = first_raw.parse()
    text = first.choices[0].message.content
    assert text and "openai" in text, first
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0, first.usage
    time.sleep(0.5)  # the cache write happens after the response
    raw = c.chat.completions.with_raw_response.create(**args)
    status = raw.headers.get("cache-status", "")
    assert "; hit" in status, f"Cache-Status: {status!r}"
    assert len(raw.headers.get("x-cache-key", "")) == 64
    again = raw.parse()
    assert again.choices[0].message.content == text
    assert again.id == first.id, "the provider's body, as cached"
    assert raw.headers.get("x-ratelimit-limit-requests")


def test_anthropic_plain_call_then_cache_hit():
    c = anthropic_client(KEY)
    args = messages_args(f"What is the capital of Italy? {NONCE} anthropic")
    first_raw = c.messages.with_raw_response.create(**args)
    # Anthropic's own rate-limit headers on a miss, as its SDK users read them.
    for family in ("requests", "input-tokens", "output-tokens"):
        for part in ("limit", "remaining", "reset"):
            name = f"anthropic-ratelimit-{family}-{part}"
            assert first_raw.headers.get(name), f"{name} missing: {dict(first_raw.headers)}"
    first = first_raw.parse()
    text = "".join(b.text for b in first.content if b.type == "text")
    assert text and "anthropic" in text, first
    assert first.usage.input_tokens > 0, first.usage
    time.sleep(0.5)
    raw = c.messages.with_raw_response.create(**args)
    status = raw.headers.get("cache-status", "")
    assert "; hit" in status, f"Cache-Status: {status!r}"
    again = raw.parse()
    assert again.content[0].text == text
    assert again.id == first.id
    assert raw.headers.get("anthropic-ratelimit-requests-limit")


def retried_after_429(client_factory, call, label):
    """Takes the bucket's one token with a first call, then makes a second at once: the gateway
    answers 429 with retry-after(-ms), the SDK waits that long, retries and succeeds. Tries a
    few times in case the first call was so slow that the token had already come back."""
    plain = client_factory(0)
    retrying = client_factory(3)
    for attempt in range(4):
        call(plain, f"{label} drain {attempt} {NONCE}", raw=False)
        started = time.monotonic()
        raw = call(retrying, f"{label} retried {attempt} {NONCE}", raw=True)
        elapsed = time.monotonic() - started
        assert raw.http_response.status_code == 200
        if raw.retries_taken >= 1:
            assert elapsed >= 0.2, f"retried after {elapsed:.3f} s: sooner than advertised"
            assert elapsed < 5, f"retried after {elapsed:.3f} s"
            print(f"     {label}: 429 retried {raw.retries_taken}x, succeeded after {elapsed:.2f} s")
            return raw
        time.sleep(1.1)
    raise AssertionError(f"{label}: never saw a 429 to retry")


def test_openai_retries_a_429_after_the_advertised_time():
    def call(c, prompt, raw):
        api = c.chat.completions.with_raw_response if raw else c.chat.completions
        return api.create(**chat_args(prompt))

    raw = retried_after_429(lambda n: openai_client(LIMITED_OPENAI, n), call, "openai")
    assert raw.parse().choices[0].message.content


def test_anthropic_retries_a_429_after_the_advertised_time():
    def call(c, prompt, raw):
        api = c.messages.with_raw_response if raw else c.messages
        return api.create(**messages_args(prompt))

    raw = retried_after_429(lambda n: anthropic_client(LIMITED_ANTHROPIC, n), call, "anthropic")
    assert raw.parse().content[0].text


def retried_after_token_429(client_factory, call, label):
    """Puts the key's input-token bucket about a second into debt (the mock reports 61,000
    input tokens for a call reserved at a few dozen), then makes a call: the gateway answers a
    token 429 with its retry time, the SDK waits that long, retries and succeeds."""
    plain = client_factory(0)
    retrying = client_factory(3)
    for attempt in range(4):
        call(plain, f"{label} debt [[mock:*=input_tokens:61000]] {attempt} {NONCE}", raw=False)
        time.sleep(0.5)  # the settlement lands after the response
        started = time.monotonic()
        raw = call(retrying, f"{label} token retried {attempt} {NONCE}", raw=True)
        elapsed = time.monotonic() - started
        assert raw.http_response.status_code == 200
        if raw.retries_taken >= 1:
            assert elapsed >= 0.3, f"retried after {elapsed:.3f} s: sooner than advertised"
            assert elapsed < 10, f"retried after {elapsed:.3f} s"
            print(f"     {label}: token 429 retried {raw.retries_taken}x, succeeded after {elapsed:.2f} s")
            return raw
        time.sleep(1.5)
    raise AssertionError(f"{label}: never saw a token 429 to retry")


def test_openai_retries_a_token_429_after_the_advertised_time():
    def call(c, prompt, raw):
        api = c.chat.completions.with_raw_response if raw else c.chat.completions
        return api.create(**chat_args(prompt))

    raw = retried_after_token_429(lambda n: openai_client(TOKENS_OPENAI, n), call, "openai")
    assert raw.parse().choices[0].message.content


def test_anthropic_retries_a_token_429_after_the_advertised_time():
    def call(c, prompt, raw):
        api = c.messages.with_raw_response if raw else c.messages
        return api.create(**messages_args(prompt))

    raw = retried_after_token_429(lambda n: anthropic_client(TOKENS_ANTHROPIC, n), call, "anthropic")
    assert raw.parse().content[0].text


def test_openai_bad_key_is_an_authentication_error():
    try:
        openai_client(BAD_KEY).chat.completions.create(**chat_args(f"nope {NONCE}"))
    except openai.AuthenticationError as e:
        assert e.status_code == 401
        assert "missing or invalid API key" in str(e), str(e)
        assert e.code == "unauthorized" and e.type == "authentication_error", (e.code, e.type)
        return
    raise AssertionError("no AuthenticationError")


def test_anthropic_bad_key_is_an_authentication_error():
    try:
        anthropic_client(BAD_KEY).messages.create(**messages_args(f"nope {NONCE}"))
    except anthropic.AuthenticationError as e:
        assert e.status_code == 401
        assert "missing or invalid API key" in str(e), str(e)
        assert e.body["type"] == "error" and e.body["error"]["type"] == "authentication_error", e.body
        return
    raise AssertionError("no AuthenticationError")


def test_openai_models_list_and_retrieve():
    models = [m.id for m in openai_client(KEY).models.list()]
    assert "gpt-4o-mini" in models and not any(m.startswith("claude") for m in models), models
    assert openai_client(KEY).models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    try:
        openai_client(KEY).models.retrieve("claude-haiku-4-5")
    except openai.NotFoundError as e:
        assert e.code == "model_not_found" and e.type == "not_found_error", (e.code, e.type)
    else:
        raise AssertionError("an Anthropic model retrieved through the OpenAI dialect")


def test_anthropic_models_list_and_retrieve():
    page = anthropic_client(KEY).models.list()
    models = [m.id for m in page.data]
    assert "claude-haiku-4-5" in models and not any(m.startswith("gpt") for m in models), models
    assert page.has_more is False
    m = anthropic_client(KEY).models.retrieve("claude-haiku-4-5")
    assert (m.id, m.type) == ("claude-haiku-4-5", "model"), m


def test_an_endpoint_not_served_is_the_sdks_not_found_error_naming_those_served():
    try:
        anthropic_client(KEY).messages.count_tokens(**{k: v for k, v in messages_args("x").items() if k != "max_tokens"})
    except anthropic.NotFoundError as e:
        assert e.body["type"] == "error" and e.body["error"]["type"] == "not_found_error", e.body
        assert "POST /v1/messages" in str(e), str(e)
        assert e.error_code == "not_found", e.error_code
    else:
        raise AssertionError("count_tokens answered")
    try:
        openai_client(KEY).responses.create(model="gpt-4o-mini", input="x")
    except openai.NotFoundError as e:
        assert e.type == "not_found_error" and "POST /v1/chat/completions" in str(e), str(e)
    else:
        raise AssertionError("responses answered")


def test_openai_stream_reassembles_to_the_whole_answer_and_is_served_from_cache():
    c = openai_client(KEY)
    prompt = f"Stream the capital of France {NONCE} openai-stream"
    args = chat_args(prompt)
    chunks = list(c.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text and "openai" in text, chunks
    usage = [ch.usage for ch in chunks if ch.usage]
    assert len(usage) == 1 and usage[0].prompt_tokens > 0 and usage[0].completion_tokens > 0, usage
    assert chunks[-1].choices == [], "the usage chunk comes last, with no choices"
    time.sleep(0.8)  # the stream's entry is written when it ends
    # The same request without `stream`: one entry serves both forms.
    raw = c.chat.completions.with_raw_response.create(**args)
    assert "hit" in raw.headers.get("cache-status", ""), raw.headers
    whole = raw.parse()
    assert whole.choices[0].message.content == text, (whole, text)
    assert whole.usage.completion_tokens == usage[0].completion_tokens
    # And the stream helper on a hit: the same final message, no new upstream call.
    with c.chat.completions.stream(**args) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == text, final
    assert checks.upstream_calls(prompt) == 1, "hits make no upstream call"


def test_openai_stream_without_include_usage_has_no_usage_chunk():
    c = openai_client(KEY)
    chunks = list(c.chat.completions.create(stream=True, **chat_args(f"no usage chunk {NONCE}")))
    assert chunks and all(ch.usage is None for ch in chunks), chunks
    assert all(ch.choices for ch in chunks), "no chunk without choices"
    assert chunks[-1].choices[0].finish_reason == "stop", chunks[-1]


def test_anthropic_stream_helper_gets_the_final_message_live_and_from_cache():
    c = anthropic_client(KEY)
    prompt = f"Stream the capital of France {NONCE} anthropic-stream"
    args = messages_args(prompt)
    with c.messages.stream(**args) as s:
        live = s.get_final_message()
    assert live.content[0].text and "anthropic" in live.content[0].text, live
    assert live.usage.input_tokens > 0 and live.usage.output_tokens > 0, live.usage
    assert live.stop_reason == "end_turn"
    time.sleep(0.8)
    with c.messages.stream(**args) as s:
        cached = s.get_final_message()
    assert cached.model_dump() == live.model_dump(), (cached, live)
    whole = c.messages.create(**args)
    assert whole.model_dump() == live.model_dump(), (whole, live)
    assert checks.upstream_calls(prompt) == 1, "hits make no upstream call"


def test_anthropic_stream_error_mid_stream_raises():
    c = anthropic_client(KEY)
    try:
        with c.messages.stream(**messages_args(f"[[mock:anthropic=stream_error]] {NONCE}")) as s:
            s.get_final_message()
    except anthropic.APIStatusError as e:
        assert "Overloaded" in str(e) or "overloaded" in str(e), str(e)
    except anthropic.APIError as e:
        assert "verloaded" in str(e), str(e)
    else:
        raise AssertionError("no error raised for a stream that failed mid-way")


def test_openai_stream_retries_a_429_before_the_stream():
    def call(c, prompt, raw):
        api = c.chat.completions.with_raw_response if raw else c.chat.completions
        r = api.create(stream=True, **chat_args(prompt))
        if not raw:
            list(r)
        return r

    time.sleep(1.1)  # the key is shared with the whole-answer 429 check: let its token come back
    raw = retried_after_429(lambda n: openai_client(LIMITED_OPENAI, n), call, "openai stream")
    chunks = list(raw.parse())
    assert any(ch.choices and ch.choices[0].delta.content for ch in chunks), chunks


def main():
    print(f"openai {openai.__version__}, anthropic {anthropic.__version__}, gateway {URL}")
    checks.run(globals(), "SDK checks")


if __name__ == "__main__":
    main()
