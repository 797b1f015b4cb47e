"""Stopping what runs for a sandbox VM finds every process, also one a killed apply left on its
way into the VM's namespace (sandbox.enter started, not yet entered): the orphan would bind
passt's ports in the namespace just after a repair's passt (the crash tests met it)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

from passtplan.providers import kernel
from passtplan.providers.sandbox.process import Process, in_netns, living_in, stop_all_in


def test_a_process_on_its_way_into_a_namespace_is_stopped_with_it(
    foreign_netns: Callable[[str], str],
) -> None:
    netns = foreign_netns("entering")
    wrapper = subprocess.Popen(in_netns(netns, ["sleep", "600"]))
    os.kill(wrapper.pid, signal.SIGSTOP)  # held before it enters, as a kill of apply can leave it
    process = Process.of(wrapper.pid)
    try:
        assert wrapper.pid not in living_in(kernel.netns_path(netns))  # not in it yet
        stop_all_in(netns)
        assert process.state() is None
    finally:
        wrapper.kill()
        wrapper.wait(timeout=10)


def test_what_runs_in_a_namespace_is_stopped_children_included(
    foreign_netns: Callable[[str], str],
) -> None:
    netns = foreign_netns("inside")
    # A parent that forks and leaves, as passt does going to the background.
    started = subprocess.run(
        in_netns(netns, ["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"]),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    child = Process.of(int(started.stdout))
    try:
        assert child.running()
        stop_all_in(netns)
        assert child.state() is None
        assert living_in(kernel.netns_path(netns)) == []
    finally:
        if child.state() is not None:
            os.kill(child.pid, signal.SIGKILL)
