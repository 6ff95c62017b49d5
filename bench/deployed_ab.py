"""Deployed-mode cold start of two commits, A/B: `python -m bench.deployed_ab [--old REV] [--new REV]`.

Not part of `make bench`: it answers "is the cold start of what ships within x % of before?" for a
change that moved code around (issue 26: the five-folder layout, 3f6b1a5; its parent is a4c2816).

Each side is its own commit's code, taken with `git archive`: the layer's `usersync/` and
`requirements.txt`, and each function directory (`functions/<fn>/app.py` as `sam build` copies it).
Both layers are built by *this* checkout's layers/shared/Makefile with the runtime's Python (3.13), so
an old commit built for 3.12 is compiled with the same interpreter as the new one, and both run under
the same `python3.13 -B -I`. The third-party packages come from the same wheelhouse when both commits
pin the same requirements (the result says whether they do), so only our code differs.

Everything else is bench/deployed.py's: the same runner (deployed_runner.py), fresh /var/task and
/opt/python trees per process, one moto server with the secret and both tables, the same environment
and requests per function. Rounds interleave the two sides per function (which side goes first
alternates by round), and the report gives medians of init + first request and of init alone, the
new / old ratio of those medians, and the median of per-round ratios.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench._common import REPO_ROOT
from bench.deployed import (
    LAYER_MAKEFILE_DIR,
    Sample,
    World,
    build_layer,
    measurement_platform,
    run_process,
    runtime_python,
)

DEFAULT_OLD = "a4c2816"  # the last commit before the five-folder layout (3f6b1a5)
FUNCTIONS = ("webhook", "authorizer", "health")
SIDES = ("old", "new")


@dataclass(frozen=True)
class Side:
    """One commit's deployable pieces, extracted and built."""

    name: str
    commit: str
    functions: Path  # holds <fn>/app.py for each function
    layer: Path  # the built layer's python/ directory
    requirements: bytes


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True)  # noqa: S607
    return done.stdout.strip()


def extract(rev: str, target: Path) -> str:
    """`git archive` of rev's layer sources and function directories into target; its full hash."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    target.mkdir(parents=True)
    paths = ["layers/shared/usersync", "layers/shared/requirements.txt"] + [
        f"functions/{f}" for f in FUNCTIONS
    ]
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit, *paths],  # noqa: S607
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)  # noqa: S607
    return commit


def build_side(name: str, rev: str, work: Path, python: str, pip_platform: str) -> Side:
    """Extract rev and build its layer with this checkout's Makefile (the runtime's Python, bytecode)."""
    root = work / name
    commit = extract(rev, root / "src")
    layer_src = root / "src" / "layers" / "shared"
    shutil.copy2(LAYER_MAKEFILE_DIR / "Makefile", layer_src / "Makefile")
    layer = build_layer(root, python, pip_platform, source=layer_src, name="layer")
    return Side(
        name=name,
        commit=commit,
        functions=root / "src" / "functions",
        layer=layer,
        requirements=(layer_src / "requirements.txt").read_bytes(),
    )


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S607


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(samples: dict[tuple[str, str], list[Sample]], functions: tuple[str, ...]) -> list[str]:
    lines = [
        f"{'function':<11} {'old total':>10} {'new total':>10} {'ratio':>6} {'per-round':>9} "
        f"{'old init':>9} {'new init':>9} {'ratio':>6}  modules from bytecode (old, new)"
    ]
    for function in functions:
        old, new = samples[(function, "old")], samples[(function, "new")]
        old_total, new_total = _median([s.total_ms for s in old]), _median([s.total_ms for s in new])
        old_init, new_init = _median([s.init_ms for s in old]), _median([s.init_ms for s in new])
        per_round = _median([n.total_ms / o.total_ms for o, n in zip(old, new, strict=True)])
        lines.append(
            f"{function:<11} {old_total:>8.0f}ms {new_total:>8.0f}ms {new_total / old_total:>6.3f} "
            f"{per_round:>9.3f} {old_init:>7.0f}ms {new_init:>7.0f}ms {new_init / old_init:>6.3f}  "
            f"{old[0].layer_modules_with_bytecode}/{old[0].layer_modules}, "
            f"{new[0].layer_modules_with_bytecode}/{new[0].layer_modules}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--old", default=DEFAULT_OLD)
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--functions", default=",".join(FUNCTIONS))
    args = parser.parse_args(argv)
    functions = tuple(args.functions.split(","))

    python = runtime_python()
    pip_platform, platform_note = measurement_platform()
    work = Path(tempfile.mkdtemp(prefix="usersync-deployed-ab-"))  # builds and trees: one file system
    world: World | None = None
    try:
        sides = {
            "old": build_side("old", args.old, work, python, pip_platform),
            "new": build_side("new", args.new, work, python, pip_platform),
        }
        same_requirements = sides["old"].requirements == sides["new"].requirements
        print(f"start: {_uptime()}", flush=True)
        print(f"python: {python}; {platform_note}")
        for side in sides.values():
            print(f"{side.name}: {side.commit}")
        print(f"requirements.txt: {'identical (same wheels both sides)' if same_requirements else 'DIFFER'}")
        world = World.create()
        samples: dict[tuple[str, str], list[Sample]] = {(f, s): [] for f in functions for s in SIDES}
        for round_no in range(args.rounds):
            order = SIDES if round_no % 2 == 0 else SIDES[::-1]
            for function in functions:
                for name in order:
                    side = sides[name]
                    sample = run_process(
                        world, python, function, "bytecode", side.layer, work, functions=side.functions
                    )
                    samples[(function, name)].append(sample)
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)
        print(f"end: {_uptime()}")
        print(f"{args.rounds} rounds; medians (ms); ratio = new / old")
        print("\n".join(report(samples, functions)))
        for function in functions:
            for name in SIDES:
                totals = ", ".join(f"{s.total_ms:.0f}" for s in samples[(function, name)])
                print(f"  {function} {name} totals: {totals}")
    finally:
        if world is not None:
            world.moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
