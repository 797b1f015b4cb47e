"""What a lab made, beyond the marks on its links, recorded under /run/passtplan.

/run is a tmpfs: the record dies at reboot together with the namespaces it describes. There is no
other state file; the live system stays the truth, and the record only says which of the live
objects are the lab's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, TypeGuard

from passtplan import inputs
from passtplan import resources as res

RUN_DIR = Path(os.environ.get("PASSTPLAN_RUN_DIR", "/run/passtplan"))


class OwnershipStore:
    """The lab's record, kept on disk so a crash loses nothing.

    Every claim is made before the action that creates the thing (an intent: a kill after it
    leaves a record of something that may not exist, which the next plan makes or ignores, never
    a thing nobody knows is the lab's), and every release after the action that removes it.
    Each is appended at once to a log beside the record (one write however many things it
    names), which the next load replays and the next flush folds into the record.
    """

    def __init__(self, lab_key: str, run_dir: Path = RUN_DIR) -> None:
        self.path = run_dir / lab_key / "owned.json"
        self.log = self.path.with_suffix(".log")
        self._lock = threading.Lock()
        self._dirty = False
        self._released: set[str] = set()  # namespaces whose contents are still to drop
        self.owned = self._load()

    def _load(self) -> res.Ownership:
        """The record, its log replayed; a corrupt file is a one-line error naming the fix
        (raised before anything is read or changed), never a crash half-way."""
        data = inputs.state_json(self.path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise inputs.state_error(self.path, "is not a JSON object")
        owned = res.Ownership(
            namespaces=_strings(self.path, data, "namespaces"),
            addresses=_strings(self.path, data, "addresses"),
            routes=_strings(self.path, data, "routes"),
            sysctls=_values(self.path, data, "sysctls"),
            vms=_strings(self.path, data, "vms"),
            foreign=_values(self.path, data, "foreign"),
            links=_strings(self.path, data, "links"),
        )
        for event in self._logged():
            self._replay(owned, event)
        self._drop_released(owned)
        _check_journal(self.path.parent / JOURNAL)
        return owned

    def _logged(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for number, event in enumerate(inputs.state_lines(self.log), 1):
            if not _is_event(event):
                raise inputs.state_error(self.log, f"line {number} is not a record event")
            events.append(event)
        return events

    def _replay(self, owned: res.Ownership, event: dict[str, Any]) -> None:
        kind, address = event["kind"], event["address"]
        match event["op"]:
            case "claim-many":
                getattr(owned, kind).update(event["addresses"])
            case "release-many":
                getattr(owned, kind).difference_update(event["addresses"])
            case "claim":
                getattr(owned, kind).add(address)
            case "release":
                getattr(owned, kind).discard(address)
            case "remember":  # an earlier value: a sysctl's, or a foreign route's (JSON)
                getattr(owned, kind).setdefault(address, event["value"])
            case "forget":
                getattr(owned, kind).pop(address, None)
            case "release-namespace":
                owned.namespaces.discard(address)
                self._released.add(address)

    def _append(self, op: str, kind: str, address: str, value: str = "") -> None:
        self._write({"op": op, "kind": kind, "address": address, "value": value})

    def _write(self, event: dict[str, Any]) -> None:
        """One line, in one write: a kill leaves it whole or cut, and a cut line is ignored."""
        self._replay(self.owned, event)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (json.dumps(event) + "\n").encode())
        finally:
            os.close(fd)
        self._dirty = True

    def _drop_released(self, owned: res.Ownership) -> None:
        """What was recorded inside deleted namespaces went with them: one pass for all."""
        if not self._released:
            return
        released = self._released

        def inside(address: str) -> bool:
            return address.split(".", 1)[1].partition("/")[0].partition("[")[0] in released

        owned.addresses = {a for a in owned.addresses if not inside(a)}
        owned.routes = {a for a in owned.routes if not inside(a)}
        owned.links = {a for a in owned.links if not inside(a)}
        owned.sysctls = {a: v for a, v in owned.sysctls.items() if not inside(a)}
        owned.foreign = {a: v for a, v in owned.foreign.items() if not inside(a)}
        self._released = set()

    def _save(self) -> None:
        owned = self.owned
        self._drop_released(owned)
        if not (
            owned.namespaces
            or owned.addresses
            or owned.routes
            or owned.sysctls
            or owned.vms
            or owned.links
            or owned.foreign
        ):
            self.path.unlink(missing_ok=True)
            self.log.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the journal may still be there
                self.path.parent.rmdir()
            self._dirty = False
            return
        data = {
            "namespaces": sorted(owned.namespaces),
            "addresses": sorted(owned.addresses),
            "routes": sorted(owned.routes),
            "sysctls": dict(sorted(owned.sysctls.items())),
            "vms": sorted(owned.vms),
            "links": sorted(owned.links),
            "foreign": dict(sorted(owned.foreign.items())),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as out:
            out.write(json.dumps(data, indent=1) + "\n")
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)  # whole or not at all
        self.log.unlink(missing_ok=True)  # folded into the record
        self._dirty = False

    def forget_all(self) -> None:
        """After a complete destroy: the lab's directory goes, journal and all."""
        with self._lock:
            self.owned = res.Ownership()
            self._released = set()
            shutil.rmtree(self.path.parent, ignore_errors=True)

    def claim(self, kind: str, address: str) -> None:
        """Record, before making it, that the thing at `address` is the lab's."""
        self.claim_many(kind, [address])

    def release(self, kind: str, address: str) -> None:
        """Record, once it is gone, that the thing at `address` is no longer the lab's."""
        self.release_many(kind, [address])

    def claim_many(self, kind: str, addresses: list[str]) -> None:
        with self._lock:
            fresh = [a for a in addresses if a not in getattr(self.owned, kind)]
            if fresh:
                self._write({"op": "claim-many", "kind": kind, "addresses": fresh, "address": ""})

    def release_many(self, kind: str, addresses: list[str]) -> None:
        with self._lock:
            held = [a for a in addresses if a in getattr(self.owned, kind)]
            if held:
                self._write({"op": "release-many", "kind": kind, "addresses": held, "address": ""})

    def flush(self) -> None:
        with self._lock:
            if self._dirty:
                self._save()

    def remember_sysctl(self, address: str, original: str) -> None:
        """The value before the lab first set it, to restore when the lab lets it go."""
        with self._lock:
            if address not in self.owned.sysctls:
                self._append("remember", "sysctls", address, original)

    def forget_sysctl(self, address: str) -> None:
        with self._lock:
            self._append("forget", "sysctls", address)

    def remember_foreign(self, address: str, before: res.Resource) -> None:
        """What something the lab did not make was before the lab changed or removed it (a
        route), to give back exactly when the lab lets it go. Logged before the change."""
        with self._lock:
            if address not in self.owned.foreign:
                value = json.dumps(res.attributes(before), sort_keys=True)
                self._append("remember", "foreign", address, value)

    def forget_foreign(self, address: str) -> None:
        with self._lock:
            self._append("forget", "foreign", address)

    def release_namespace(self, name: str) -> None:
        """Everything recorded inside a deleted namespace went with it."""
        with self._lock:
            self._append("release-namespace", "namespaces", name)


JOURNAL = "journal.jsonl"
SETS = ("namespaces", "addresses", "routes", "vms", "links")
VALUES = ("sysctls", "foreign")
OPS = {"claim": SETS, "release": SETS, "remember": VALUES, "forget": VALUES}


def _strings(path: Path, data: dict[str, object], key: str) -> set[str]:
    found = data.get(key, [])
    if not isinstance(found, list) or not all(isinstance(v, str) for v in found):
        raise inputs.state_error(path, f"{key!r} is not a list of names")
    return set(found)


def _values(path: Path, data: dict[str, object], key: str) -> dict[str, str]:
    found = data.get(key, {})
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise inputs.state_error(path, f"{key!r} is not a mapping of names to values")
    return dict(found)


def _is_event(event: object) -> TypeGuard[dict[str, Any]]:
    if not isinstance(event, dict):
        return False
    if event.get("op") in ("claim-many", "release-many"):
        names = event.get("addresses")
        many = isinstance(names, list) and all(isinstance(n, str) for n in names)
        return many and event.get("kind") in SETS
    fields = ("op", "kind", "address", "value")
    if not all(isinstance(event.get(f, ""), str) for f in fields) or "address" not in event:
        return False
    op, kind = event.get("op"), event.get("kind")
    if op == "release-namespace":
        return True
    return kind in OPS.get(str(op), ()) and (op != "remember" or "value" in event)


def _check_journal(path: Path) -> None:
    """The journal is appended to after every apply: a corrupt one is found now, not then."""
    for number, entry in enumerate(inputs.state_lines(path), 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("entries"), list):
            raise inputs.state_error(path, f"line {number} is not a journal entry")
