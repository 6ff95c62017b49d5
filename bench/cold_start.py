"""(3) Cold start: a fresh `python -c "import app"` per handler vs `python -c "pass"`.

Each handler is imported the way Lambda does it: the function directory and the layer on the path,
its environment set (fake credentials), module-level code run (settings parsed, clients created).
Statements are interleaved round by round; the figure is median(import) - median(pass), in ms.
Contrast rows time the libraries the handlers pull in, and `-X importtime` shows where it goes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from bench._common import BASE_ENV, FUNCTIONS_DIR, LAYER_DIR, Goal, function_exists

GOAL_MS = 300.0
HANDLERS = ("webhook", "authorizer", "health", "me")
# What a handler must not import: svix's API client (~350 ms), PyJWT for the webhook, the Svix
# verifier for the authorizer.
FORBIDDEN = {
    "webhook": ("svix", "jwt"),
    "authorizer": ("svix", "standardwebhooks"),
}
CONTRASTS = {
    "import svix": "import svix",
    "import jwt": "import jwt",
    "import boto3 + client('dynamodb')": "import boto3; boto3.session.Session().client('dynamodb')",
    "powertools Logger() + Metrics()": (
        "from aws_lambda_powertools import Logger, Metrics; Logger(); Metrics()"
    ),
    "powertools Tracer() (X-Ray SDK, patches botocore)": "from aws_lambda_powertools import Tracer; Tracer()",
}


def _env(pem: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "CLERK_"))}
    env.pop("PYTHONPATH", None)
    env.update(BASE_ENV)
    env.update(
        {
            "USERS_TABLE_NAME": "usersync-bench-users",
            "CLERK_WEBHOOK_SIGNING_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "CLERK_JWT_KEY": pem,
            "SYNC_FAILURE_THRESHOLD": "0.05",
            "SYNC_WINDOW_MINUTES": "15",
            "SYNC_MIN_ATTEMPTS": "20",
        }
    )
    return env


def _command(
    statement: str, handler: str | None, env: dict[str, str]
) -> tuple[list[str], dict[str, str], str]:
    run_env = dict(env)
    cwd = str(LAYER_DIR)
    if handler is not None:
        cwd = str(FUNCTIONS_DIR / handler)
        run_env["PYTHONPATH"] = os.pathsep.join([cwd, str(LAYER_DIR)])
    return [sys.executable, "-c", statement], run_env, cwd


def _wall_ms(statement: str, handler: str | None, env: dict[str, str]) -> float:
    argv, run_env, cwd = _command(statement, handler, env)
    start = time.perf_counter()
    subprocess.run(argv, env=run_env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def _imported_modules(handler: str, env: dict[str, str]) -> set[str]:
    argv, run_env, cwd = _command(
        "import sys, json, app; print(json.dumps(sorted(sys.modules)))", handler, env
    )
    done = subprocess.run(argv, env=run_env, cwd=cwd, check=True, capture_output=True, text=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


# Where an import's time goes: these modules' cumulative `-X importtime` figures (nested ones overlap).
PROFILED_MODULES = (
    "boto3",
    "botocore.session",
    "aws_xray_sdk.core",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "pydantic",
    "jwt",
    "cryptography.x509",
    "standardwebhooks.webhooks",
    "svix",
)


def _import_profile(handler: str, env: dict[str, str]) -> dict[str, float]:
    """Cumulative ms of PROFILED_MODULES and of the usersync modules in `-X importtime` of `import app`."""
    argv, run_env, cwd = _command("import app", handler, env)
    importtime = [argv[0], "-X", "importtime", *argv[1:]]
    done = subprocess.run(importtime, env=run_env, cwd=cwd, check=True, capture_output=True, text=True)
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        module = name.strip()
        if module in PROFILED_MODULES or module.startswith("usersync.") or module == "app":
            found[module] = max(found.get(module, 0.0), int(cumulative_us) / 1000)
    return dict(sorted(found.items(), key=lambda item: -item[1]))


def _bench_pem() -> str:
    from usersync_dev.clerk import SigningKey

    return SigningKey.generate().public_pem()


def _measure(
    jobs: dict[str, tuple[str, str | None]], rounds: int, env: dict[str, str]
) -> dict[str, list[float]]:
    """Wall ms of every job, `rounds` times, interleaved and rotated so drift hits every job alike."""
    for statement, handler in jobs.values():  # compile bytecode once: measure warm-pyc starts
        _wall_ms(statement, handler, env)
    samples: dict[str, list[float]] = {label: [] for label in jobs}
    labels = list(jobs)
    for round_no in range(rounds):
        shift = round_no % len(labels)
        for label in labels[shift:] + labels[:shift]:
            statement, handler = jobs[label]
            samples[label].append(_wall_ms(statement, handler, env))
    return samples


def _absent(name: str) -> Goal:
    return Goal(
        "cold start",
        f"import {name} app, ms above `pass`",
        None,
        f"<= {GOAL_MS:.0f} ms",
        None,
        "ms",
        f"functions/{name}/app.py not present yet",
    )


def _handler_goals(name: str, samples: list[float], floor: float, env: dict[str, str]) -> list[Goal]:
    """The handler's import time above `pass`, and whether it kept clear of its forbidden imports."""
    above = statistics.median(samples) - floor
    modules = _imported_modules(name, env)
    forbidden = {module: module in modules for module in FORBIDDEN.get(name, ())}
    avoided = ", ".join(f"{'imports' if hit else 'no'} {module}" for module, hit in forbidden.items())
    goals = [
        Goal(
            "cold start",
            f"import {name} app, ms above `pass`",
            above,
            f"<= {GOAL_MS:.0f} ms",
            above <= GOAL_MS,
            "ms",
            avoided,
            {
                "median_ms": statistics.median(samples),
                "floor_ms": floor,
                "forbidden_imports": forbidden,
                "importtime_cumulative_ms": _import_profile(name, env),
            },
        )
    ]
    if forbidden:
        goals.append(
            Goal(
                "cold start",
                f"{name} avoids {' and '.join(forbidden)}",
                float(not any(forbidden.values())),
                "no forbidden import",
                not any(forbidden.values()),
                "",
                avoided,
            )
        )
    return goals


def run(*, rounds: int = 10, handlers: tuple[str, ...] = HANDLERS, contrasts: bool = True) -> list[Goal]:
    env = _env(_bench_pem())
    present = [name for name in handlers if function_exists(name)]
    jobs: dict[str, tuple[str, str | None]] = {"pass": ("pass", None)}
    jobs.update({f"handler:{name}": ("import app", name) for name in present})
    if contrasts:
        jobs.update({label: (statement, None) for label, statement in CONTRASTS.items()})
    samples = _measure(jobs, rounds, env)
    floor = statistics.median(samples["pass"])

    goals: list[Goal] = []
    for name in handlers:
        if name in present:
            goals.extend(_handler_goals(name, samples[f"handler:{name}"], floor, env))
        else:
            goals.append(_absent(name))
    if contrasts:
        goals.extend(
            Goal(
                "cold start",
                f"contrast: {label}, ms above `pass`",
                statistics.median(samples[label]) - floor,
                "info",
                None,
                "ms",
            )
            for label in CONTRASTS
        )
    for goal in goals:
        goal.details.setdefault("rounds", rounds)
    return goals
