#!/usr/bin/env python3
"""Computes the fixed cache-key vectors independently of the Rust code (DESIGN.md "Cache key").

Run from anywhere: python3 core/tests/vectors/make_vectors.py
Writes cache_key.json and request_cache_key.json next to this script. Uses only the standard
library: str.lower, unicodedata (NFC, general category), json, hashlib.

json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) is RFC 8785 for these
inputs: object keys are all below U+E000 (so code point order is UTF-16 order), strings are
escaped the same way (only '"', '\\' and controls, lowercase \\u00xx), and numbers are passed
through jcs_numbers() first, which applies the two ECMAScript rules these vectors exercise
(an integral double prints as an integer; an integer beyond 2^53 is the double it rounds to)
and refuses any float whose repr() could differ from ECMAScript's.
"""

import hashlib
import json
import os
import re
import unicodedata

# Unicode White_Space, which is what Rust's char::is_whitespace tests.
WHITE_SPACE = (
    [chr(c) for c in range(0x09, 0x0E)]
    + ["\u0020", "\u0085", "\u00a0", "\u1680"]
    + [chr(c) for c in range(0x2000, 0x200B)]
    + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
)
WS_RUN = re.compile("[" + "".join(WHITE_SPACE) + "]+")


def normalize(p):
    s = unicodedata.normalize("NFC", p.lower())
    s = WS_RUN.sub(" ", s).strip(" ")
    while s and (unicodedata.category(s[-1]).startswith("P") or s[-1] in WHITE_SPACE):
        s = s[:-1]
    return s


def jcs_numbers(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v if abs(v) <= 2**53 else int(float(v))
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return int(v)
        assert "e" not in repr(v) and "inf" not in repr(v) and "nan" not in repr(v), v
        return v
    if isinstance(v, list):
        return [jcs_numbers(x) for x in v]
    if isinstance(v, dict):
        assert all(max(map(ord, k), default=0) < 0xE000 for k in v), v
        return {k: jcs_numbers(x) for k, x in v.items()}
    raise TypeError(v)


def sha256_of_canonical(value):
    text = json.dumps(jcs_numbers(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ask_key(scope, prompt, providers, params):
    return sha256_of_canonical(["ask/v1", scope, normalize(prompt), sorted(set(providers)), params])


MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini"}
PARAMS = {"max_tokens": 512, "temperature": 0.7, "models": MODELS}

ASK = [
    # (scope, prompt, providers, params)
    ("shared", "What is the capital of France?", ["openai", "anthropic"], PARAMS),
    ("private:acct_123", "What is the capital of France?", ["openai", "anthropic"], PARAMS),
    ("private:acct_456", "  what IS the capital   of france ?!  ", ["anthropic", "openai", "openai"], PARAMS),
    ("shared", "Qu'est-ce qu'un CAFE\u0301 crème ?", ["gemini"], {"max_tokens": 256}),
    ("shared", "Qu'est-ce qu'un café crème", ["gemini"], {"max_tokens": 256}),
    ("shared", "a|b||c |", ["perplexity"], {}),
    ("shared", 'He said "hi" \\ to C:\\path\\', ["anthropic"], {}),
    ("shared", "line one\n\n\tline two\r\n\u2028line three\u3000", ["anthropic"], {}),
    ("shared", "nul\u0000inside\u0000 and \u0001\u001f\u007f controls", ["openai"], {}),
    ("shared", "family \U0001F468\u200d\U0001F469\u200d\U0001F467 and a\u200db\u200d", ["gemini"], {}),
    ("shared", "E\u0301LE\u0300VE d\u0327ac\u0327a", ["gemini"], {}),
    ("shared", "ΟΔΟΣ ΣΟΦΙΑΣ!", ["gemini", "anthropic"], {}),
    ("shared", "İSTANBUL ẞ STRASSE", ["openai"], {}),
    ("shared", "What is C++?", ["openai"], {"temperature": 1.0}),
    ("shared", "what is c++", ["openai"], {"temperature": 1}),
    ("shared", "東京の天気は？", ["anthropic", "gemini", "openai", "perplexity"], {"max_tokens": 100}),
    ("shared", "?! ...", ["anthropic"], {}),
    ('private:acct|"x\\y', "prompt", ["anthropic"], {}),
    ("shared", '","shared","x', ["anthropic"], {}),
    (
        "shared",
        "nested params",
        ["anthropic"],
        {"z": [1.5, 0.001, -0, 2**53, 2**53 + 1], "a": {"é": True, "e": None, "E": "x"}, "models": {"anthropic": "m"}},
    ),
]

REQUEST = [
    # (namespace, scope, request)
    (
        "messages/v1",
        "shared",
        {"model": "claude-haiku-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello, Claude"}]},
    ),
    (
        "messages/v1",
        "private:acct_123",
        {"model": "claude-haiku-4-5", "max_tokens": 1024.0, "messages": [{"role": "user", "content": "Hello, Claude"}]},
    ),
    (
        "chat/v1",
        "shared",
        {"model": "gpt-4o-mini", "temperature": 0.2, "messages": [{"role": "user", "content": "Say \"hi\"\n\u0000 é"}]},
    ),
    ("chat/v1", "private:a\"b", {"messages": [], "stream": False}),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ask_rows = [
        {
            "scope": scope,
            "prompt": prompt,
            "providers": providers,
            "params": params,
            "normalized": normalize(prompt),
            "expected_key": ask_key(scope, prompt, providers, params),
        }
        for scope, prompt, providers, params in ASK
    ]
    request_rows = [
        {
            "namespace": namespace,
            "scope": scope,
            "request": request,
            "expected_key": sha256_of_canonical([namespace, scope, request]),
        }
        for namespace, scope, request in REQUEST
    ]
    for name, rows in [("cache_key.json", ask_rows), ("request_cache_key.json", request_rows)]:
        with open(os.path.join(here, name), "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2, ensure_ascii=True)
            f.write("\n")
        print(f"wrote {len(rows)} rows to {name}")


if __name__ == "__main__":
    main()
