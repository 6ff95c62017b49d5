"""One cold start in deployed mode (run by bench/deployed.py, one fresh process per measurement).

`python3.13 -B -I deployed_runner.py SPEC_JSON` (the template's runtime): the path holds only the
function directory (as /var/task) and the layer (as /opt/python) besides the stdlib, nothing is written
to __pycache__, and the clock starts before the handler module is imported. Timed: init (`import app`,
module-level code) and the first request; then, untimed, a second request (for call counts). Standard
library only: this file must not pull in anything the handler would find already imported.
"""

import json
import os
import resource
import sys
import time
import urllib.request

started = time.perf_counter()
spec = json.loads(sys.argv[1])
sys.path[:0] = [spec["task"], spec["opt_python"]]


class Context:
    """What Lambda passes as `context` (the attributes Powertools reads)."""

    function_name = spec["function_name"]
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{spec['function_name']}"
    aws_request_id = "bench-request-1"
    log_group_name = f"/aws/lambda/{spec['function_name']}"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 5000


def mark(label: str) -> None:
    """Tell the bench's moto server where one request's AWS calls end (an untimed, counted-apart call)."""
    with urllib.request.urlopen(f"{spec['mark_url']}/{label}", timeout=5) as response:  # noqa: S310
        response.read()


def peak_rss() -> int:
    """Peak RSS in kB of this program only: VmHWM restarts at exec, whereas ru_maxrss keeps the peak of
    the process that forked us (the bench itself) across exec on Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


import app  # type: ignore[import-not-found]  # noqa: E402 - the handler, from /var/task

initialized = time.perf_counter()
first = app.lambda_handler(spec["events"][0], Context())
answered = time.perf_counter()
peak_rss_kb = peak_rss()
mark("first")
sys.stdout.flush()
log_bytes_first = os.fstat(1).st_size  # stdout is a file: init and first request's log and EMF lines
later = [app.lambda_handler(event, Context()) for event in spec["events"][1:]]
mark("later")
sys.stdout.flush()
log_bytes_later = os.fstat(1).st_size - log_bytes_first
result = {
    "init_ms": (initialized - started) * 1000,
    "first_request_ms": (answered - initialized) * 1000,
    "total_ms": (answered - started) * 1000,
    "peak_rss_kb": peak_rss_kb,
    "responses": [first, *later],
    "log_bytes_first": log_bytes_first,
    "log_bytes_per_later_request": log_bytes_later / max(1, len(later)),
}
# Which layer modules had bytecode beside them (read, not compiled): proves what each variant measured.
layer_specs = [
    s
    for s in (getattr(m, "__spec__", None) for m in list(sys.modules.values()))
    if s is not None and (s.origin or "").startswith(spec["opt_python"]) and s.origin.endswith(".py")
]
result["layer_modules_loaded"] = len(layer_specs)
result["layer_modules_with_bytecode"] = sum(1 for s in layer_specs if s.cached and os.path.exists(s.cached))
with open(spec["result"], "w", encoding="utf-8") as handle:
    json.dump(result, handle, default=str)
sys.stdout.flush()
os._exit(0)  # no interpreter teardown: not part of a cold start, and ~0.5 s per process of bench time
