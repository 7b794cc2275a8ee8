"""What the Python check scripts here (test_sdks.py, test_litellm.py) share: their runner (every
`test_*` function of the script, in name order, one line each, every failure's traceback, exit 1
if any failed, `OK` at the end) and the mock's count of upstream calls."""
import json
import os
import sys
import traceback
import urllib.parse
import urllib.request


def upstream_calls(contains):
    """How many calls the mock (MOCK_URL) received whose body contains `contains`."""
    url = os.environ["MOCK_URL"].rstrip("/") + "/__mock/calls?contains=" + urllib.parse.quote(contains)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)["total"]


def run(namespace, what):
    """Runs the `test_*` callables of `namespace` (a script's `globals()`); `what` names them."""
    tests = [v for k, v in sorted(namespace.items()) if k.startswith("test_") and callable(v)]
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
        print(f"{len(failed)} of {len(tests)} {what} failed: {', '.join(failed)}")
        sys.exit(1)
    print(f"OK: {len(tests)} {what} passed")
