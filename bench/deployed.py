"""(6) Deployed mode: the cold start of what `sam build` ships, in fresh processes of the runtime's Python.

What is run is what is deployed: the layer built by layers/shared/Makefile (the target `sam build`
runs), each function directory as `sam build` copies it, laid out as /var/task and /opt/python in a
fresh copy per process, `python3.13 -B -I` (the template's Runtime; nothing written, nothing else on the
path), the template's environment (the webhook secret *ARN*, served by a moto server with the table, so
the first request's Secrets Manager read is timed too). Three variants of each function, interleaved
round by round:

- bytecode: the layer as this project's build ships it (Python 3.13 unchecked-hash .pyc);
- source:   the same files without __pycache__ (what a plain `BuildMethod: python3.13` ships);
- peer:     a tutorial-style handler (bench/peer/) on a tutorial-style layer (svix, Powertools with
            Tracer, boto3, PyJWT), source only.

Figure per process: init (import app) + first request, from before the import to the response.
Goals are ratios of medians per round (source / bytecode, peer / bytecode). On a machine that is not
aarch64 the layer's native extensions (pydantic_core, cryptography) cannot load: the same Makefile
builds it from the same versions' x86_64 wheels for the measurement, and the result says so.

Every AWS call each process makes reaches the moto server, which counts them per request: the call
counts that feed docs/performance.md's cost per million are printed and stored with the results. /me runs on
the template's two tables for a stored caller without memberships ("me") and with ME_MEMBERSHIPS
("me-member"), so its Query and BatchGetItem are counted as deployed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import BASE_ENV, FUNCTIONS_DIR, REPO_ROOT, Goal
from usersync_dev.template import runtime_python as template_runtime_python
from usersync_dev.template import runtime_python_version

GOAL_RATIO = 2.0
FUNCTIONS = ("webhook", "authorizer")
VARIANTS = ("bytecode", "source", "peer")
RUNNER = Path(__file__).with_name("deployed_runner.py")
PEER_DIR = Path(__file__).with_name("peer")
LAYER_MAKEFILE_DIR = REPO_ROOT / "layers" / "shared"
WHEELS = REPO_ROOT / ".venv" / "wheels"
CACHE = REPO_ROOT / ".venv" / "bench-deployed"
TABLE = "usersync-bench-deployed-users"
ORGANIZATIONS_TABLE = "usersync-bench-deployed-organizations"
ME_MEMBERSHIPS = 2  # organizations of the /me caller with memberships (one BatchGetItem reads them all)
SECRET_NAME = "usersync/bench/clerk-webhook"
NAMESPACE = "usersync-bench"
# Every benchmark's offline environment (bench._common), plus what the template gives these functions.
DEPLOYED_ENV = {
    **BASE_ENV,
    "USERS_TABLE_NAME": TABLE,
    "ORGANIZATIONS_TABLE_NAME": ORGANIZATIONS_TABLE,  # the template's Globals give it to every function
    "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
    # The peer's Tracer would try to reach an X-Ray daemon; disabled, it still imports the X-Ray SDK.
    # (Our functions have no Tracer.) This only favours the peer.
    "POWERTOOLS_TRACE_DISABLED": "true",
}


# ---------------------------------------------------------------- interpreter and platform


def runtime_python() -> str:
    """A working python of the template's runtime: $RUNTIME_PYTHON (make bench sets it) or what
    layers/shared/Makefile finds; refused when it is another version (what is deployed is measured)."""
    python = template_runtime_python()
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not version.startswith(f"{runtime_python_version()}."):
        wanted = runtime_python_version()
        raise RuntimeError(f"{python} is Python {version}; the template's runtime is python{wanted}")
    return python


def measurement_platform() -> tuple[str, str]:
    """The pip platform tag the layer is built for here, and a note when it is not the deployed one."""
    machine = platform.machine().lower()
    if machine in {"aarch64", "arm64"}:
        return "manylinux2014_aarch64", "arm64 as deployed"
    return (
        f"manylinux2014_{machine}",
        f"{machine} machine: the deployed arm64 layer's native extensions cannot load here, so it was "
        f"measured built from the same versions' {machine} wheels (same Makefile, same files otherwise)",
    )


# ---------------------------------------------------------------- artifacts


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def build_layer(
    work: Path,
    python: str,
    pip_platform: str,
    *,
    source: Path = LAYER_MAKEFILE_DIR,
    name: str = "layer-bytecode",
) -> Path:
    """`make build-SharedLayer` as `sam build` runs it, offline from the wheelhouse `make wheels` fills:
    of this checkout's layer, or of `source` (another commit's layer sources with this Makefile), into
    `work / name`."""
    wheelhouse = WHEELS / pip_platform
    if not any(wheelhouse.glob("*.whl")):
        raise RuntimeError(f"no wheels in {wheelhouse}: run `make wheels` (downloads them from PyPI once)")
    artifacts = work / name
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env.update(
        {
            "ARTIFACTS_DIR": str(artifacts),
            "RUNTIME_PYTHON": python,
            "LAYER_PLATFORM": pip_platform,
            "WHEELHOUSE": str(wheelhouse),
        }
    )
    _run(["make", "-s", "-C", str(source), "build-SharedLayer"], env)
    return artifacts / "python"


def source_only(layer: Path, work: Path) -> Path:
    """The same layer without bytecode: what a plain python3.13 `sam build` ships."""
    target = work / "layer-source" / "python"
    shutil.copytree(layer, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def peer_layer(python: str, pip_platform: str) -> Path:
    """The tutorial peer's layer (bench/peer/requirements.txt with dependencies), cached per content.

    The first run needs PyPI; later runs reuse .venv/bench-deployed/ (keyed by runtime version too).
    """
    requirements = PEER_DIR / "requirements.txt"
    keyed = requirements.read_bytes() + pip_platform.encode() + runtime_python_version().encode()
    digest = hashlib.sha256(keyed).hexdigest()[:12]
    target = CACHE / f"peer-{pip_platform}-{digest}" / "python"
    if (target.parent / ".complete").exists():
        return target
    shutil.rmtree(target.parent, ignore_errors=True)
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--root-user-action=ignore",
            "--no-compile",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            runtime_python_version(),
            "--platform",
            pip_platform,
            "--target",
            str(target),
            "-r",
            str(requirements),
        ]
    )
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    (target.parent / ".complete").write_text("ok\n", encoding="utf-8")
    return target


# Processes of one deployed function with different data: /me for a stored user without memberships,
# and for one with ME_MEMBERSHIPS memberships (both seeded before the process starts).
FUNCTION_OF = {"me-member": "me"}


def function_dir(function: str, variant: str) -> Path:
    deployed_function = FUNCTION_OF.get(function, function)
    return PEER_DIR / deployed_function if variant == "peer" else FUNCTIONS_DIR / deployed_function


# ---------------------------------------------------------------- moto, counting every call


@dataclass
class CountingMoto:
    """A moto server on 127.0.0.1 that logs each AWS operation it serves, and the runner's marks."""

    log: list[str] = field(default_factory=list)
    metric_stats_per_get_metric_data: list[int] = field(default_factory=list)
    port: int = 0
    _server: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        from usersync_dev.moto_compat import match_dimensions_as_a_set

        match_dimensions_as_a_set()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path.startswith("/__bench__/"):
                self.log.append("mark:" + path.rsplit("/", 1)[-1])
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok"]
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            self._count(environ, path, body)
            result: Iterable[bytes] = moto_app(environ, start_response)
            return result

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _count(self, environ: dict[str, Any], path: str, body: bytes) -> None:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            prefix, _, operation = target.partition(".")
            service = {"DynamoDB_20120810": "DynamoDB", "secretsmanager": "SecretsManager"}.get(
                prefix, "CloudWatch" if prefix.startswith("GraniteService") else prefix
            )
        elif "/operation/" in path:  # smithy-rpc-v2-cbor (CloudWatch)
            service, operation = "CloudWatch", path.rsplit("/", 1)[-1]
        else:
            service, operation = environ.get("HTTP_HOST", "?"), path
        self.log.append(f"{service} {operation}")
        if operation == "GetMetricData":
            self.metric_stats_per_get_metric_data.append(_metric_stats(environ, body))

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _metric_stats(environ: dict[str, Any], body: bytes) -> int:
    """MetricStat queries in a GetMetricData request body (JSON, CBOR or query protocol)."""
    content_type = environ.get("CONTENT_TYPE", "")
    if "cbor" in content_type:
        from botocore.parsers import RpcV2CBORParser

        parser = RpcV2CBORParser()  # botocore's own CBOR decoder
        decoded = parser.parse_data_item(parser.get_peekable_stream_from_bytes(body))
        return sum(1 for query in decoded.get("MetricDataQueries", []) if "MetricStat" in query)
    if "json" in content_type:
        return sum(1 for query in json.loads(body).get("MetricDataQueries", []) if "MetricStat" in query)
    text = body.decode()
    return text.count("MetricStat.Metric.MetricName=")


def split_calls(log: list[str]) -> dict[str, Counter[str]]:
    """One process's log cut at its marks: the first request (with init) and the later ones."""
    phases: dict[str, Counter[str]] = {"first": Counter(), "later": Counter()}
    current = "first"
    for entry in log:
        if entry.startswith("mark:"):
            current = "later" if entry == "mark:first" else "done"
            continue
        if current in phases:
            phases[current][entry] += 1
    return phases


# ---------------------------------------------------------------- the world the functions run in


@dataclass
class World:
    moto: CountingMoto
    secret: str
    secret_arn: str
    key: Any
    public_pem: str

    @classmethod
    def create(cls) -> World:
        import boto3

        from usersync_dev.clerk import SigningKey, new_webhook_secret
        from usersync_dev.template import create_organizations_table, create_users_table

        moto = CountingMoto()
        moto.start()
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        dynamodb = session.client("dynamodb", endpoint_url=moto.url())
        create_users_table(dynamodb, TABLE)
        create_organizations_table(dynamodb, ORGANIZATIONS_TABLE)
        secret = new_webhook_secret()
        arn = session.client("secretsmanager", endpoint_url=moto.url()).create_secret(
            Name=SECRET_NAME, SecretString=secret
        )["ARN"]
        key = SigningKey.generate()
        moto.log.clear()
        return cls(moto, secret, arn, key, key.public_pem())

    def seed_me_caller(self, user_id: str, memberships: int) -> None:
        """Store the user (as a webhook would) and `memberships` organizations with a live membership
        each, before the /me process starts (these calls are not counted: they precede its log)."""
        import boto3

        from usersync.clerk.organizations import ClerkMembership, ClerkOrganization
        from usersync.clerk.users import ClerkUser
        from usersync.runtime.metrics import SyncSource
        from usersync.store.organizations import MembershipRecord, OrganizationRecord, OrganizationRepository
        from usersync.store.records import UserRecord
        from usersync.store.users import UserRepository
        from usersync_dev.clerk import clerk_membership, clerk_organization, clerk_user, now_ms

        client = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("dynamodb", endpoint_url=self.moto.url())
        user = ClerkUser.model_validate(clerk_user(user_id, created_at=now_ms()))
        UserRepository(client, TABLE).save(UserRecord.from_clerk_user(user, source=SyncSource.WEBHOOK))
        organizations = OrganizationRepository(client, ORGANIZATIONS_TABLE)
        for index in range(memberships):
            org = clerk_organization(f"org_{user_id}_{index}", name=f"Org {index}", slug=f"org-{index}")
            organizations.save(
                OrganizationRecord.from_clerk(
                    ClerkOrganization.model_validate(org), source=SyncSource.WEBHOOK
                )
            )
            membership = clerk_membership(f"orgmem_{user_id}_{index}", organization=org, user_id=user_id)
            organizations.save(
                MembershipRecord.from_clerk(
                    ClerkMembership.model_validate(membership), source=SyncSource.WEBHOOK
                )
            )

    def env(self, function: str) -> dict[str, str]:
        function = FUNCTION_OF.get(function, function)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        env.update(DEPLOYED_ENV)
        env.update(
            {
                "AWS_ENDPOINT_URL": self.moto.url(),
                "AWS_LAMBDA_FUNCTION_NAME": f"usersync-bench-{function}",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            }
        )
        if function == "webhook":
            env["CLERK_WEBHOOK_SECRET_ARN"] = self.secret_arn
        elif function == "authorizer":
            env.update(
                {
                    "CLERK_JWT_KEY": self.public_pem,
                    "CLERK_JWKS_URL": "",
                    "CLERK_ISSUER": "",
                    "CLERK_AUTHORIZED_PARTIES": "",
                }
            )
        elif function == "health":
            env.update(
                {"SYNC_FAILURE_THRESHOLD": "0.05", "SYNC_WINDOW_MINUTES": "15", "SYNC_MIN_ATTEMPTS": "20"}
            )
        return env

    def events(self, function: str) -> list[dict[str, Any]]:
        """The first request, then later ones: a new user each process, so every run does the same work."""
        from usersync_dev.apigw import http_api_authorizer_event, http_api_event
        from usersync_dev.clerk import (
            clerk_event,
            clerk_user,
            mint_token,
            new_user_id,
            now_ms,
            session_claims,
            sign_delivery,
        )

        user_id = new_user_id()
        if function == "webhook":
            created = now_ms()
            deliveries = [
                sign_delivery(
                    self.secret, clerk_event("user.created", clerk_user(user_id, created_at=created))
                ),
                sign_delivery(
                    self.secret,
                    clerk_event(
                        "user.updated",
                        clerk_user(
                            user_id, created_at=created, updated_at=created + 1000, first_name="Later"
                        ),
                    ),
                ),
            ]
            return [
                http_api_event("POST", "/webhooks/clerk", body=d.body, headers=d.headers) for d in deliveries
            ]
        if function == "authorizer":
            token = mint_token(self.key, session_claims(user_id, first_name="Ada"))
            event = http_api_authorizer_event("GET", "/me", headers={"Authorization": f"Bearer {token}"})
            return [event, event]  # the same user again: compare-first finds nothing to write
        if function in {"me", "me-member"}:
            self.seed_me_caller(user_id, ME_MEMBERSHIPS if function == "me-member" else 0)
            return [http_api_event("GET", "/me", authorizer_context={"userId": user_id})] * 2
        return [http_api_event("GET", "/health")] * 2  # the second within the container cache


def _accepted(function: str, response: dict[str, Any]) -> bool:
    """The answer the seeded world calls for: /me finds its caller and lists every seeded organization."""
    if function == "authorizer":
        return response.get("isAuthorized") is True
    status = int(response.get("statusCode", 0))
    if function in {"me", "me-member"}:
        listed = json.loads(response.get("body") or "{}").get("organizations")
        expected = ME_MEMBERSHIPS if function == "me-member" else 0
        return status == 200 and isinstance(listed, list) and len(listed) == expected
    return status in {200, 503} if function == "health" else 200 <= status < 300


# ---------------------------------------------------------------- one fresh process


@dataclass
class Sample:
    function: str
    variant: str
    init_ms: float
    first_request_ms: float
    total_ms: float
    peak_rss_mb: float
    layer_modules: int
    layer_modules_with_bytecode: int
    calls: dict[str, Counter[str]]
    stdout_bytes: int
    log_bytes_first: int = 0
    log_bytes_per_later_request: float = 0.0


def _fresh_tree(source: Path, target: Path) -> None:
    """A fresh directory tree of `source`'s files: hard links (fast for the ~70 MB layer) on one file
    system, else a copy. Directories are new, so nothing a process could write (it runs with -B) would
    reach the source tree or the next process; the files themselves are never modified."""
    linked = subprocess.run(["cp", "-al", str(source), str(target)], capture_output=True, check=False)  # noqa: S607
    if linked.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def run_process(
    world: World,
    python: str,
    function: str,
    variant: str,
    layer: Path,
    work: Path,
    functions: Path | None = None,
) -> Sample:
    """Copy /var/task and /opt/python afresh, run the runner once, return what it measured.

    `functions` holds the function directories when not this checkout's (bench/deployed_ab.py)."""
    root = Path(tempfile.mkdtemp(prefix=f"{function}-{variant}-", dir=work))
    try:
        task, opt_python = root / "var" / "task", root / "opt" / "python"
        source = function_dir(function, variant) if functions is None else functions / function
        shutil.copytree(source, task, ignore=shutil.ignore_patterns("__pycache__"))
        opt_python.parent.mkdir(parents=True)
        _fresh_tree(layer, opt_python)
        spec = {
            "task": str(task),
            "opt_python": str(opt_python),
            "function_name": f"usersync-bench-{FUNCTION_OF.get(function, function)}",
            "events": world.events(function),
            "result": str(root / "result.json"),
            "mark_url": f"{world.moto.url()}/__bench__",
        }
        start = len(world.moto.log)
        stdout_path = root / "stdout.log"
        with stdout_path.open("wb") as stdout:
            done = subprocess.run(
                [python, "-B", "-I", str(RUNNER), json.dumps(spec)],
                env=world.env(function),
                cwd=task,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=120,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"{function}/{variant} failed:\n{done.stderr.decode()[-3000:]}")
        result = json.loads((root / "result.json").read_text(encoding="utf-8"))
        if not all(_accepted(function, response) for response in result["responses"]):
            raise RuntimeError(f"{function}/{variant} answered {result['responses']}")
        return Sample(
            function=function,
            variant=variant,
            init_ms=result["init_ms"],
            first_request_ms=result["first_request_ms"],
            total_ms=result["total_ms"],
            peak_rss_mb=result["peak_rss_kb"] / 1024,
            layer_modules=result["layer_modules_loaded"],
            layer_modules_with_bytecode=result["layer_modules_with_bytecode"],
            calls=split_calls(world.moto.log[start:]),
            stdout_bytes=stdout_path.stat().st_size,
            log_bytes_first=result["log_bytes_first"],
            log_bytes_per_later_request=result["log_bytes_per_later_request"],
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- the run


def _rotations(jobs: list[tuple[str, str]], rounds: int) -> Iterator[tuple[str, str]]:
    for round_no in range(rounds):
        shift = round_no % len(jobs)
        yield from jobs[shift:] + jobs[:shift]


def _fmt_calls(counter: Counter[str]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in sorted(counter.items())) or "none"


def run(*, rounds: int = 11, variants: tuple[str, ...] = VARIANTS, counts: bool = True) -> list[Goal]:
    python = runtime_python()
    pip_platform, platform_note = measurement_platform()
    CACHE.mkdir(parents=True, exist_ok=True)  # beside the peer layer: one file system, hard links work
    work = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
    world: World | None = None
    try:
        layers: dict[str, Path] = {"bytecode": build_layer(work, python, pip_platform)}
        if "source" in variants:
            layers["source"] = source_only(layers["bytecode"], work)
        if "peer" in variants:
            layers["peer"] = peer_layer(python, pip_platform)
        world = World.create()
        jobs = [(function, variant) for function in FUNCTIONS for variant in variants]
        samples: dict[tuple[str, str], list[Sample]] = {job: [] for job in jobs}
        for function, variant in _rotations(jobs, rounds):
            samples[(function, variant)].append(
                run_process(world, python, function, variant, layers[variant], work)
            )
        extra: dict[str, Sample] = {}
        if counts:  # call counts of the other two functions (bytecode layer, one process each)
            for function in ("me", "me-member", "health"):
                extra[function] = run_process(world, python, function, "bytecode", layers["bytecode"], work)
        version = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        goals = _goals(samples, variants, rounds, f"python {version}; {platform_note}")
        goals.append(_call_counts(samples, extra, world))
        return goals
    finally:
        if world is not None:
            world.moto.stop()
        shutil.rmtree(work, ignore_errors=True)


def _goals(
    samples: dict[tuple[str, str], list[Sample]], variants: tuple[str, ...], rounds: int, note: str
) -> list[Goal]:
    goals: list[Goal] = []
    for function in FUNCTIONS:
        ours = samples[(function, "bytecode")]
        for baseline in (v for v in variants if v != "bytecode"):
            theirs = samples[(function, baseline)]
            ratio = statistics.median(t.total_ms / o.total_ms for t, o in zip(theirs, ours, strict=True))
            label = "source-only (plain sam build)" if baseline == "source" else "the tutorial peer"
            goals.append(
                Goal(
                    "deployed cold start",
                    f"{function}: init + first request, {label} / shipped bytecode",
                    ratio,
                    f">= {GOAL_RATIO:.2f}x",
                    ratio >= GOAL_RATIO,
                    "x",
                    note,
                    {"rounds": rounds, "median_of": "per-round ratios"},
                )
            )
        for variant in variants:
            runs = samples[(function, variant)]
            goals.append(
                Goal(
                    "deployed cold start",
                    f"{function} [{variant}]: init + first request (median)",
                    statistics.median(s.total_ms for s in runs),
                    "info",
                    None,
                    "ms",
                    f"init {statistics.median(s.init_ms for s in runs):.0f} ms + first request "
                    f"{statistics.median(s.first_request_ms for s in runs):.0f} ms; peak RSS "
                    f"{statistics.median(s.peak_rss_mb for s in runs):.0f} MB; layer modules read from "
                    f"bytecode {runs[0].layer_modules_with_bytecode}/{runs[0].layer_modules}",
                    {
                        "total_ms": [round(s.total_ms, 1) for s in runs],
                        "init_ms": [round(s.init_ms, 1) for s in runs],
                        "first_request_ms": [round(s.first_request_ms, 1) for s in runs],
                        "peak_rss_mb": [round(s.peak_rss_mb, 1) for s in runs],
                        "processes": len(runs),
                    },
                )
            )
    return goals


def _call_counts(
    samples: dict[tuple[str, str], list[Sample]], extra: dict[str, Sample], world: World
) -> Goal:
    """What one invocation costs in AWS calls, measured on moto: printed, and stored in the results."""
    measured: dict[str, dict[str, Any]] = {}
    for function in FUNCTIONS:
        sample = samples[(function, "bytecode")][0]
        measured[function] = {
            "first": dict(sample.calls["first"]),
            "later": dict(sample.calls["later"]),
            "log_bytes_first": sample.log_bytes_first,
            "log_bytes_per_later_request": sample.log_bytes_per_later_request,
        }
    for function, sample in extra.items():
        measured[function] = {
            "first": dict(sample.calls["first"]),
            "later": dict(sample.calls["later"]),
            "log_bytes_first": sample.log_bytes_first,
            "log_bytes_per_later_request": sample.log_bytes_per_later_request,
        }
    stats = sorted(set(world.moto.metric_stats_per_get_metric_data))
    measured["health"]["metric_stats_per_get_metric_data"] = stats
    lines = ["AWS calls per invocation, measured on moto (deployed mode, bytecode layer):"]
    later_label = {
        "webhook": "next event (user.updated, warm)",
        "authorizer": "same user again (compare-first, warm)",
        "me": "again (warm)",
        "me-member": "again (warm)",
        "health": "again within the 5 s container cache",
    }
    for function, phases in measured.items():
        lines.append(f"  {function:<10} cold first request: {_fmt_calls(Counter(phases['first']))}")
        lines.append(f"  {'':<10} {later_label[function]}: {_fmt_calls(Counter(phases['later']))}")
        lines.append(
            f"  {'':<10} stdout (logs + EMF): {phases['log_bytes_first']} B with init, "
            f"{phases['log_bytes_per_later_request']:.0f} B per warm request"
        )
    lines.append(f"  GetMetricData MetricStat queries per call: {stats}")
    print("\n".join(lines), flush=True)
    return Goal(
        "deployed cold start",
        "AWS calls per invocation (feeds docs/performance.md: Cost per million)",
        None,
        "info",
        None,
        "",
        "; ".join(
            f"{function}: {_fmt_calls(Counter(p['first']))} | warm {_fmt_calls(Counter(p['later']))}"
            for function, p in measured.items()
        ),
        {"calls": measured},
    )


if __name__ == "__main__":  # a quick look: python -m bench.deployed [rounds]
    for goal in run(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(goal.metric, goal.value, goal.note)
