"""Counting a reliability test in the run report (support.REPORT): tried when it starts, held once it
passes, so the report says how many cases of each kind ran and how many held."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

from tests.reliability.support import REPORT

P = ParamSpec("P")


def counted(tried: str, held: str) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """Decorate a test so that REPORT[tried] counts its runs and REPORT[held] those that passed.

    The wrapper keeps the test's signature (functools.wraps), so pytest still sees its fixtures and
    parameters."""

    def decorate(test: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(test)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            REPORT[tried] += 1
            test(*args, **kwargs)
            REPORT[held] += 1

        return run

    return decorate
