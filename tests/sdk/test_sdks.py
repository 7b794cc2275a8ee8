#!/usr/bin/env python3
"""The official OpenAI and Anthropic Python SDKs against the gateway's drop-in endpoints, with
only their base URL changed: a plain call, a cache hit on the repeat (the Cache-Status header),
a 429 the SDK retries after the advertised time and then succeeds, a 401 surfaced as the SDK's
AuthenticationError, and the streaming refusal as a BadRequestError.

Run by the Rust integration test `dropin::the_official_python_sdks_work_through_the_gateway`,
which starts the stack and passes: GATEWAY_URL, GATEWAY_KEY (a fresh live key),
GATEWAY_KEY_LIMITED_OPENAI and GATEWAY_KEY_LIMITED_ANTHROPIC (keys whose bucket holds one
token, refilled every second), RUN_NONCE (makes prompts unique to this run).
Prints one line per check and `OK` at the end; exits 1 if any check failed.
"""
import os
import sys
import time
import traceback

import anthropic
import openai

URL = os.environ["GATEWAY_URL"].rstrip("/")
KEY = os.environ["GATEWAY_KEY"]
LIMITED_OPENAI = os.environ["GATEWAY_KEY_LIMITED_OPENAI"]
LIMITED_ANTHROPIC = os.environ["GATEWAY_KEY_LIMITED_ANTHROPIC"]
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
    first = c.chat.completions.create(**args)
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


def test_anthropic_plain_call_then_cache_hit():
    c = anthropic_client(KEY)
    args = messages_args(f"What is the capital of Italy? {NONCE} anthropic")
    first = c.messages.create(**args)
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


def test_streaming_is_refused_with_a_readable_bad_request():
    try:
        openai_client(KEY).chat.completions.create(stream=True, **chat_args(f"stream {NONCE}"))
    except openai.BadRequestError as e:
        assert "stream: true is not supported" in str(e), str(e)
        assert e.code == "streaming_unsupported"
    else:
        raise AssertionError("no BadRequestError for stream=True (openai)")
    try:
        anthropic_client(KEY).messages.create(stream=True, **messages_args(f"stream {NONCE}"))
    except anthropic.BadRequestError as e:
        assert "stream: true is not supported" in str(e), str(e)
    else:
        raise AssertionError("no BadRequestError for stream=True (anthropic)")


def main():
    print(f"openai {openai.__version__}, anthropic {anthropic.__version__}, gateway {URL}")
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    failed = []
    for t in tests:
        try:
            t()
            print(f"ok   {t.__name__}")
        except Exception:  # noqa: BLE001 - report every failure, then fail the run
            failed.append(t.__name__)
            print(f"FAIL {t.__name__}")
            traceback.print_exc(file=sys.stdout)
    if failed:
        print(f"{len(failed)} of {len(tests)} SDK checks failed: {', '.join(failed)}")
        sys.exit(1)
    print(f"OK: {len(tests)} SDK checks passed")


if __name__ == "__main__":
    main()
