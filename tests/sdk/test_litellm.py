#!/usr/bin/env python3
"""LiteLLM (pinned in requirements.txt) against the gateway's drop-in endpoints, streaming, as a
user of it points it at the gateway: `litellm.completion(..., stream=True)` with the OpenAI and
the Anthropic provider and only `api_base` changed. LiteLLM reads OpenAI's stream through the
openai SDK but Anthropic's with its own event parser, a second client of the Messages stream.
Checks: the text and usage streamed, `stream_chunk_builder` rebuilding the same answer as the
whole call (a hit of the same entry), a repeat served without an upstream call, and a stream
that fails mid-way raised, never a clean end.

Run by the Rust integration test `dropin::litellm_streams_through_the_gateway`, which starts the
stack and passes GATEWAY_URL, GATEWAY_KEY (a fresh live key), MOCK_URL and RUN_NONCE.
Prints one line per check and `OK` at the end; exits 1 if any check failed (`checks.run`).
"""
import importlib.metadata
import os
import time

# The model price map ships with the package: no fetch of it at import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # noqa: E402

import checks  # noqa: E402

litellm.suppress_debug_info = True

URL = os.environ["GATEWAY_URL"].rstrip("/")
KEY = os.environ["GATEWAY_KEY"]
NONCE = os.environ.get("RUN_NONCE") or str(time.time_ns())

PROVIDERS = {
    # LiteLLM's OpenAI provider takes the base URL with `/v1`, as the openai SDK does.
    "openai": dict(model="openai/gpt-4o-mini", api_base=URL + "/v1"),
    # Its Anthropic provider appends `/v1/messages` to the base URL.
    "anthropic": dict(model="anthropic/claude-haiku-4-5", api_base=URL),
}


def call(provider, prompt, **extra):
    return litellm.completion(
        api_key=KEY,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=64,
        timeout=20,
        num_retries=0,
        **PROVIDERS[provider],
        **extra,
    )


def streamed_then_cached(provider):
    prompt = f"Stream the capital of France {NONCE} litellm-{provider}"
    chunks = list(call(provider, prompt, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert provider in text, (text, chunks)
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1, "several deltas"
    rebuilt = litellm.stream_chunk_builder(chunks)
    assert rebuilt.choices[0].message.content == text, rebuilt
    assert rebuilt.usage.prompt_tokens > 0 and rebuilt.usage.completion_tokens > 0, rebuilt.usage
    time.sleep(0.8)  # the stream's entry is written when it ends
    # The same request whole: a hit of the entry the stream wrote, the same answer.
    whole = call(provider, prompt)
    assert whole.choices[0].message.content == text, (whole, text)
    assert whole.usage.completion_tokens == rebuilt.usage.completion_tokens, (whole.usage, rebuilt.usage)
    assert whole.choices[0].finish_reason == "stop", whole
    # And streamed again from the cache.
    again = list(call(provider, prompt, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in again if c.choices) == text
    assert checks.upstream_calls(prompt) == 1, "the repeats make no upstream call"


def failed_mid_stream(provider, fault):
    prompt = f"[[mock:{provider}={fault}]] {NONCE} litellm"
    seen = []
    try:
        for c in call(provider, prompt, stream=True):
            seen.append(c)
    except Exception as e:  # noqa: BLE001 - LiteLLM maps provider errors onto its own classes
        assert any(c.choices and c.choices[0].delta.content for c in seen), "content came first"
        return type(e).__name__
    raise AssertionError(f"{provider} {fault}: the stream ended cleanly after {len(seen)} chunks")


def test_openai_stream_and_cache():
    streamed_then_cached("openai")


def test_anthropic_stream_and_cache():
    streamed_then_cached("anthropic")


def test_errors_mid_stream_are_raised():
    for provider in ("openai", "anthropic"):
        for fault in ("stream_error", "stream_truncate"):
            print(f"     {provider} {fault}: raised {failed_mid_stream(provider, fault)}")


def main():
    print(f"litellm {importlib.metadata.version('litellm')}, gateway {URL}")
    checks.run(globals(), "LiteLLM checks")


if __name__ == "__main__":
    main()
