"""The runner of the Python check scripts here (test_sdks.py, test_litellm.py): every `test_*`
function of the script, in name order, one line each, every failure's traceback, exit 1 if any
failed, `OK` at the end."""
import sys
import traceback


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
