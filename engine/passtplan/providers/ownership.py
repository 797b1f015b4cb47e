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

from passtplan import resources as res

RUN_DIR = Path(os.environ.get("PASSTPLAN_RUN_DIR", "/run/passtplan"))


class OwnershipStore:
    """The lab's record, kept on disk after every change so a crash loses nothing."""

    def __init__(self, lab_key: str, run_dir: Path = RUN_DIR) -> None:
        self.path = run_dir / lab_key / "owned.json"
        self._lock = threading.Lock()
        self._dirty = False
        self.owned = self._load()

    def _load(self) -> res.Ownership:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return res.Ownership()
        return res.Ownership(
            namespaces=set(data.get("namespaces", [])),
            addresses=set(data.get("addresses", [])),
            routes=set(data.get("routes", [])),
            sysctls=dict(data.get("sysctls", {})),
            vms=set(data.get("vms", [])),
        )

    def _save(self) -> None:
        owned = self.owned
        if not (owned.namespaces or owned.addresses or owned.routes or owned.sysctls or owned.vms):
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the journal may still be there
                self.path.parent.rmdir()
            return
        data = {
            "namespaces": sorted(owned.namespaces),
            "addresses": sorted(owned.addresses),
            "routes": sorted(owned.routes),
            "sysctls": dict(sorted(owned.sysctls.items())),
            "vms": sorted(owned.vms),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(self.path)
        self._dirty = False

    def forget_all(self) -> None:
        """After a complete destroy: the lab's directory goes, journal and all."""
        with self._lock:
            self.owned = res.Ownership()
            shutil.rmtree(self.path.parent, ignore_errors=True)

    def claim(self, kind: str, address: str) -> None:
        """Addresses and routes are saved by flush() (thousands per apply); namespaces and VMs,
        which outlive a crash as processes and mounts, at once."""
        with self._lock:
            getattr(self.owned, kind).add(address)
            self._dirty = True
            if kind in ("namespaces", "vms"):
                self._save()

    def release(self, kind: str, address: str) -> None:
        with self._lock:
            getattr(self.owned, kind).discard(address)
            self._dirty = True
            if kind in ("namespaces", "vms"):
                self._save()

    def flush(self) -> None:
        with self._lock:
            if self._dirty:
                self._save()

    def remember_sysctl(self, address: str, original: str) -> None:
        """The value before the lab first set it, to restore when the lab lets it go."""
        with self._lock:
            self.owned.sysctls.setdefault(address, original)
            self._save()

    def forget_sysctl(self, address: str) -> None:
        with self._lock:
            self.owned.sysctls.pop(address, None)
            self._save()

    def release_namespace(self, name: str) -> None:
        """Everything recorded inside a deleted namespace went with it."""
        prefixes = (f"address.{name}/", f"route.{name}[", f"sysctl.{name}[")
        with self._lock:
            self.owned.namespaces.discard(name)
            self.owned.addresses = {a for a in self.owned.addresses if not a.startswith(prefixes)}
            self.owned.routes = {a for a in self.owned.routes if not a.startswith(prefixes)}
            self.owned.sysctls = {
                a: v for a, v in self.owned.sysctls.items() if not a.startswith(prefixes)
            }
            self._save()
