"""The apply half of the pipeline: walk a plan's graph, hand each change to its resource family,
record what was done, then read the live state again and verify it."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import msgspec

from passtplan import resources as res
from passtplan.changes import Action, ApplyReport, Change, Plan
from passtplan.desired import Desired, netns_name
from passtplan.engine import long_lived_heap, observe_state
from passtplan.errors import PasstplanError
from passtplan.providers import kernel
from passtplan.providers.actions import Applier
from passtplan.providers.context import ApplyContext
from passtplan.providers.ownership import JOURNAL, OwnershipStore
from passtplan.providers.session import Session
from passtplan.providers.vm_kubevirt import ClusterContext
from passtplan.verify import VerifyError, verify
from passtplan.walk import Outcome, Status, walk


def apply_plan(
    plan: Plan,
    session: Session,
    store: OwnershipStore,
    *,
    workers: int = 4,
    cluster: ClusterContext | None = None,
    verify: bool = True,
    journal: bool = True,
) -> ApplyReport:
    """Walk the plan's graph; then, unless told not to (a rollback does neither), write the
    journal line and verify the live state against the lab."""
    with long_lived_heap():
        return _apply_plan(
            plan,
            session,
            store,
            workers=workers,
            cluster=cluster,
            verify=verify,
            journal=journal,
        )


def _apply_plan(
    plan: Plan,
    session: Session,
    store: OwnershipStore,
    *,
    workers: int,
    cluster: ClusterContext | None,
    verify: bool,
    journal: bool,
) -> ApplyReport:
    started = time.perf_counter()
    # Taken now: the record changes as the walk goes. A destroy has no way back (its journal
    # goes with the lab), so it keeps none.
    journal = journal and not plan.destroy
    before = live_digest(plan.state) if journal else ""
    graph = plan.graph
    applier = Applier(ApplyContext(session, plan.desired, store, cluster, plan.loaded.manifests))
    members: dict[str, Outcome] = {}

    def visit(node: str) -> str:
        changes: list[Change] = graph.nodes[node]["changes"]
        if len(changes) == 1:
            return applier(changes[0])
        begun = time.perf_counter()
        ordered = sorted(changes, key=lambda c: c.action is not Action.DELETE)  # deletes first
        failed = 0
        for change, note, error in applier.batch(ordered):
            seconds = (time.perf_counter() - begun) / len(changes)
            status = Status.DONE if error is None else Status.FAILED
            failed += error is not None
            members[change.address] = Outcome(change.address, status, error or note or "", seconds)
        if failed:
            raise PasstplanError(f"{failed} of {len(changes)} changes failed")
        return f"{len(changes)} changes in one batch"

    stop = threading.Event()
    try:
        with interruptible(stop):
            outcomes = walk(
                graph,
                _killed_after_test_hook(visit),
                workers=workers,
                inline=lambda node: all(_nothing_to_do(c) for c in graph.nodes[node]["changes"]),
                stop=stop,
            )
    finally:
        store.flush()  # what was made is recorded even if the walk broke off
    walked = time.perf_counter() - started
    results = []
    for node, outcome in outcomes.items():
        for change in graph.nodes[node]["changes"]:
            member = members.get(change.address)
            if member is None:
                member = Outcome(change.address, outcome.status, outcome.detail, outcome.seconds)
            results.append((change, member))
    order = {c.address: i for i, c in enumerate(plan.changes)}
    results.sort(key=lambda pair: order[pair[0].address])
    if journal:
        write_journal(store, results, before)
    verify_errors: list[VerifyError] = []
    if verify and all(o.status is Status.DONE for _, o in results):
        verify_errors = verify_live(plan, session, store, cluster)
        if plan.destroy and not plan.targets and not verify_errors:
            forget_destroyed(plan, session, store)
    return ApplyReport(plan, results, verify_errors, time.perf_counter() - started, walked)


@contextmanager
def interruptible(stop: threading.Event) -> Iterator[None]:
    """SIGINT or SIGTERM stops the walk at the next action boundary (what runs finishes and is
    recorded); a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stopping(signum: int, _frame: object) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()
        print(
            "\nInterrupted: finishing the actions under way; press Ctrl-C again to quit at once.",
            file=sys.stderr,
            flush=True,
        )

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


KILL_AFTER = "PASSTPLAN_TEST_KILL_AFTER"  # the crash tests' hook: SIGKILL after K actions
FAIL_AT = "PASSTPLAN_TEST_FAIL_AT"  # the rollback tests' hook: the K-th action fails


def _killed_after_test_hook(visit: Callable[[str], str]) -> Callable[[str], str]:
    """The tests' hooks, from the environment: with PASSTPLAN_TEST_KILL_AFTER=K the process
    kills itself as the K-th action finishes, as a kill between two actions would
    (tests/integration/test_crash); with PASSTPLAN_TEST_FAIL_AT=K the K-th action fails
    instead of running, as a failing step would (tests/integration/test_rollback)."""
    # The failure is for this walk only: a rollback that follows in this process runs clean.
    kill, fail = os.environ.get(KILL_AFTER), os.environ.pop(FAIL_AT, None)
    if not kill and not fail:
        return visit
    count = itertools.count(1)
    lock = threading.Lock()

    def counted(node: str) -> str:
        with lock:
            number = next(count)
        if fail and number == int(fail):
            raise PasstplanError(f"failed by the test hook ({FAIL_AT}={fail})")
        note = visit(node)
        if kill and number >= int(kill):
            os.kill(os.getpid(), signal.SIGKILL)
        return note

    return counted


def verify_live(
    plan: Plan, session: Session, store: OwnershipStore, cluster: ClusterContext | None = None
) -> list[VerifyError]:
    """Re-read the live state and hold it against the lab (a targeted plan: its resources)."""
    errors = verify(plan.desired, observe_state(plan.desired, session, store, cluster))
    if plan.targets:
        planned = {c.address for c in plan.changes}
        errors = [e for e in errors if e.address in planned]
    return errors


def forget_destroyed(plan: Plan, session: Session, store: OwnershipStore) -> None:
    """Nothing of the lab is left: neither the names given to pods' namespaces, nor its record
    and journal (also when a destroy that was cut short left only those)."""
    detach_found_namespaces(plan.desired, session)
    for name in store.owned.namespaces:
        # a deletion cut short between unmounting and unlinking leaves an empty file
        path = kernel.netns_path(netns_name(plan.desired.lab, name))
        if path.exists() and not kernel.is_namespace(path):
            path.unlink()
    store.forget_all()


def detach_found_namespaces(desired: Desired, session: Session) -> None:
    """The names apply gave pods' namespaces (LAB.N) are the lab's: they go with it. The pods'
    namespaces themselves are Kubernetes' and stay until their pods go."""
    for ns in desired.namespaces.values():
        if ns.resolve is not None and ns.resolve[0] in ("vm", "pod") and ns.netns:
            session.forget(ns.name)
            kernel.remove(ns.netns)


def _nothing_to_do(change: Change) -> bool:
    """No-ops, and what goes with its namespace or veth peer: done on the walker's own thread."""
    return change.action is Action.NOOP or change.covered_by is not None


UNDO = {
    Action.CREATE: Action.DELETE,
    Action.DELETE: Action.CREATE,
    Action.UPDATE: Action.UPDATE,
    Action.REPLACE: Action.REPLACE,
}


def _undone_itself(change: Change) -> bool:
    """What went with another change is undone with it, except a veth end deleted with its
    other end: making the pair again makes it, but its own attributes (MTU, MAC, up) are given
    back by its own undo."""
    return not change.covered_by or (
        change.address.startswith("link.") and change.covered_by.startswith("link.")
    )


def write_journal(
    store: OwnershipStore, results: list[tuple[Change, Outcome]], before: str
) -> None:
    """Every completed action with what undoes it, and the digest of the live state before
    them, for `passtplan rollback`. One line per apply, written in one write (a kill leaves it
    whole or cut, and a cut line is ignored): thousands of changes cost one encoder call.
    """
    entries = [
        {
            "address": change.address,
            "action": str(change.action),
            "undo": str(UNDO[change.action]),
            "before": res.attributes(change.before),
            "after": res.attributes(change.after),
        }
        for change, outcome in results
        if outcome.status is Status.DONE and change.action in UNDO and _undone_itself(change)
    ]
    if not entries:
        return
    path = store.path.parent / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.time(), "before": before, "entries": entries}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def live_digest(state: res.State) -> str:
    """A digest of what a rollback must give back: every resource's attributes (not the kernel's
    ifindexes, which a link made again does not keep) and the lab's record."""
    digest = hashlib.sha256()
    for name, ns in sorted(state.namespaces.items()):
        digest.update(f"{name}={ns is not None}\n".encode())
        if ns is not None:
            parts: list[res.Resource] = [*ns.links.values(), *ns.addresses, *ns.routes]
            text = sorted(json.dumps(res.attributes(r), sort_keys=True) for r in parts)
            digest.update("\n".join([*text, json.dumps(ns.sysctls, sort_keys=True)]).encode())
    owned = msgspec.structs.asdict(state.owned)  # flat: sets and dicts of names
    digest.update(json.dumps(owned, sort_keys=True, default=sorted).encode())
    return digest.hexdigest()
