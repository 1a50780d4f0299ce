#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ktlsgw integration suite: real sockets on loopback, nginx 1.22 as the oracle.

python3 tests/integration/run.py [FILTER...]   (env GW_BIN, GW_CERTS)
One line per test ("ok    name", "FAIL  name: why", "SKIP  name: why"), then
"N passed, N failed, N skipped"; exit status 1 if anything failed."""

import os
import signal
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lib  # noqa: E402
import test_oracle  # noqa: E402,F401
import test_gateway  # noqa: E402,F401
import test_regress  # noqa: E402,F401
import test_ktls  # noqa: E402,F401
import test_passthrough  # noqa: E402,F401
import test_bench  # noqa: E402,F401
import test_upstream  # noqa: E402,F401


def _on_signal(signum, frame):
    lib.cleanup()
    print("interrupted (signal %d)" % signum, flush=True)
    os._exit(130)


def run_one(fn, timeout):
    res = {}

    def body():
        try:
            fn()
            res["r"] = ("ok", "")
        except lib.Skip as e:
            res["r"] = ("SKIP", str(e))
        except lib.TestFailure as e:
            res["r"] = ("FAIL", str(e))
        except Exception as e:
            tb = traceback.extract_tb(e.__traceback__)[-1]
            res["r"] = ("FAIL", "%s: %s (%s:%d)" % (type(e).__name__, e,
                                                    os.path.basename(tb.filename), tb.lineno))

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout * lib.SLOW)
    if t.is_alive():
        return ("FAIL", "timed out after %ds" % (timeout * lib.SLOW))
    return res.get("r", ("FAIL", "no result"))


def main():
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    filters = [a for a in sys.argv[1:] if a]
    npass = nfail = nskip = 0
    t0 = time.monotonic()
    try:
        if not os.path.isfile(lib.cert("client-good.crt")):
            print("FAIL  setup: no test PKI in %s (GW_CERTS)" % lib.CERTS)
            print("0 passed, 1 failed, 0 skipped")
            return 1
        for name, fn, timeout in lib.TESTS:
            if filters and not any(f in name for f in filters):
                continue
            st, why = run_one(fn, timeout)
            # servers a test left running (failure paths) are stopped between tests
            lib.cleanup_test()
            why = why.replace("\n", "\\n")
            if len(why) > 3000:
                why = why[:3000] + "..."
            if st == "ok":
                npass += 1
                print("ok    %s" % name, flush=True)
            elif st == "SKIP":
                nskip += 1
                print("SKIP  %s: %s" % (name, why), flush=True)
            else:
                nfail += 1
                print("FAIL  %s: %s" % (name, why), flush=True)
    finally:
        lib.cleanup()
    sys.stderr.write("(%.1fs)\n" % (time.monotonic() - t0))
    print("%d passed, %d failed, %d skipped" % (npass, nfail, nskip), flush=True)
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
