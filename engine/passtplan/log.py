"""`--verbose` / PASSTPLAN_LOG=debug: each netlink request and Kubernetes call, timed, on stderr,
through the stdlib logger "passtplan".

Requests are hooked where they go out (providers/rtnl.py, providers/session.py's pyroute2
handle, providers/vm_kubevirt.py's Cluster.call). When the logger is off, a hooked request costs
one isEnabledFor check: nothing is timed or formatted.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

LOG = logging.getLogger("passtplan")
P = ParamSpec("P")
T = TypeVar("T")


def log_to_stderr() -> None:
    """Turn the log on: one line per request, after it, naming its namespace and how long it
    took."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("passtplan: %(message)s"))
    LOG.handlers = [handler]  # once, however many commands one process runs
    LOG.setLevel(logging.DEBUG)


def traced(describe: Callable[P, str]) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Log each call of the function, described by `describe` (given the same arguments)."""

    def wrap(func: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(func)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            if not LOG.isEnabledFor(logging.DEBUG):
                return func(*args, **kwargs)
            return timed(describe(*args, **kwargs), lambda: func(*args, **kwargs))

        return call

    return wrap


def logged(what: str, request: Callable[[], T]) -> T:
    """Run the request; logged and timed when the log is on."""
    if not LOG.isEnabledFor(logging.DEBUG):
        return request()
    return timed(what, request)


class TracedCalls:
    """An object whose method calls are each logged and timed (pyroute2's IPRoute, --verbose)."""

    def __init__(self, target: object, prefix: str) -> None:
        self._target = target
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        if not callable(found):
            return found

        def call(*args: object, **kwargs: object) -> object:
            shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
            return timed(
                f"{self._prefix} {name}({', '.join(shown)})", lambda: found(*args, **kwargs)
            )

        return call


def is_on() -> bool:
    return LOG.isEnabledFor(logging.DEBUG)


def timed(what: str, request: Callable[[], T]) -> T:
    """Run the request and log it with its duration (and its failure, if it fails)."""
    start = time.perf_counter()
    outcome = "failed"
    try:
        result = request()
        outcome = "ok"
        return result
    finally:
        took = (time.perf_counter() - start) * 1000
        LOG.debug("%s: %s [%.2f ms]", what, outcome, took)
