"""The input gate: every path and name a command is given is checked here before any work.

A lab path (a folder means its lab.yaml), the files a lab names (VM manifests), a saved plan,
`plan --out`, `show --netns` names, and the lab's record under /run/passtplan. Each problem is
one InputError whose message is one line, `PATH: what is wrong; the fix`, raised before the
command reads the machine, let alone changes it.

A leaf module: it imports only the standard library and the error tree, so the language may use
it to read the files it parses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path

from passtplan.errors import PasstplanError

MIB = 1024 * 1024
# A lab of 2,400 star spokes (100,000 resources) is 4 MiB of YAML and takes ~12 s to validate;
# a bigger file is a mistake (a log, an image), and reading it would run for minutes.
MAX_LAB_BYTES = 4 * MIB
MAX_MANIFEST_BYTES = 1 * MIB
MAX_SAVED_PLAN_BYTES = 256 * MIB  # every change of the plan, before and after: large labs
MAX_STATE_BYTES = 256 * MIB
LAB_FILE = "lab.yaml"
NETNS_DIR = Path("/run/netns")
NAME_MAX = 255  # bytes in one file name: a named netns is a file under /run/netns
SUN_PATH_MAX = 107  # bytes in a UNIX socket's path (sun_path is 108, NUL included)


class InputError(PasstplanError):
    """A path or name given to passtplan cannot be used; the message names it and the fix."""


def size_text(size: int) -> str:
    if size >= MIB:
        return f"{size / MIB:.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} bytes"


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _stat(path: Path, what: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path of the {what}") from None
    except NotADirectoryError:
        raise InputError(
            f"{path}: a part of the path is a file, not a folder; check the path of the {what}"
        ) from None
    except PermissionError:
        raise InputError(
            f"{path}: permission denied; make the {what} readable to this user"
        ) from None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, an embedded NUL
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(
            f"{path}: cannot be read ({reason}); check the path of the {what}"
        ) from None


def regular_file(path: Path, *, what: str, limit: int) -> os.stat_result:
    """Check, without opening it, that `path` is a readable regular file of at most `limit`
    bytes; a FIFO or a device is never opened (opening a FIFO blocks until someone writes)."""
    found = _stat(path, what)
    kind = _kind(found.st_mode)
    if kind is not None:
        raise InputError(f"{path}: is {kind}, not a {what}; give the path of a regular file")
    if found.st_size > limit:
        raise InputError(
            f"{path}: is {size_text(found.st_size)}, over the {size_text(limit)} limit for a "
            f"{what}; give the right file (a {what} is far smaller)"
        )
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied; make the {what} readable to this user")
    return found


def read_file(path: Path, *, what: str, limit: int) -> bytes:
    """The bytes of a regular file checked by regular_file(); opened without blocking, and
    checked again once open (it may have been swapped for a FIFO in between)."""
    regular_file(path, what=what, limit=limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"{path}: cannot be opened ({exc.strerror}); check the {what}") from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise InputError(f"{path}: is {kind}, not a {what}; give the path of a regular file")
        chunks = []
        size = 0
        while chunk := os.read(fd, MIB):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise InputError(
                    f"{path}: grew over the {size_text(limit)} limit for a {what} while read; "
                    "give a file that is not being written"
                )
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check the {what}") from None
    finally:
        os.close(fd)


def lab_path(path: Path, *, limit: int = MAX_LAB_BYTES) -> Path:
    """The lab file a command was given: a folder means the lab.yaml inside it."""
    found = _stat(path, "lab file")
    if stat.S_ISDIR(found.st_mode):
        inside = path / LAB_FILE
        if not inside.exists() and not inside.is_symlink():
            raise InputError(
                f"{path}: is a folder without a {LAB_FILE}; give the lab file, or a folder "
                f"that holds {LAB_FILE}"
            )
        path = inside
    regular_file(path, what="lab file", limit=limit)
    return path


def head(path: Path, size: int = 4096) -> bytes:
    """The first bytes of a regular file checked by regular_file(), without blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, size)
    finally:
        os.close(fd)


def out_path(path: Path, *, lab: Path | None = None) -> Path:
    """Where `plan --out` may write: a new or regular file in an existing, writable folder,
    and not the lab file itself."""
    parent = path.parent
    try:
        found = os.stat(path)
    except FileNotFoundError:
        found = None
    except NotADirectoryError:
        raise InputError(
            f"{path}: {parent} is not a folder; give --out a path in an existing folder"
        ) from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(
            f"{path}: cannot write the plan there ({reason}); give another --out path"
        ) from None
    if found is not None:
        kind = _kind(found.st_mode)
        if kind is not None:
            raise InputError(
                f"{path}: is {kind}; give --out a file name (a new file, or one to overwrite)"
            )
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a folder"
        raise InputError(
            f"{path}: the folder {parent} {what}; create it first, or give --out another path"
        )
    if found is not None and lab is not None and _same_file(path, lab):
        raise InputError(
            f"{path}: is the lab file itself; give --out another path (e.g. {path.stem}.plan)"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (
        found is not None and not os.access(path, os.W_OK)
    ):
        raise InputError(f"{path}: permission denied; give --out a path this user may write")
    return path


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


OTHER_OUT = "give --out another path"


def write_out(path: Path, content: str | bytes, *, what: str, fix: str = OTHER_OUT) -> None:
    """Write `what` (a saved plan, a picture, a formatted lab file) whole or not at all: to a
    temporary file beside it, then renamed; `fix` is what the user can do when it fails."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(content.encode() if isinstance(content, str) else content)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # a folder of that name, say: not ours to remove
            tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write {what} ({exc.strerror}); {fix}") from None


def netns_name(name: str) -> str:
    """A name given to `show --netns`: a file name under /run/netns, as `ip netns` makes."""
    size = len(name.encode(errors="surrogateescape"))
    if not name:
        raise InputError("--netns '': empty name; give a name that ip netns list shows")
    if name in {".", ".."} or "/" in name or "\0" in name:
        raise InputError(
            f"--netns {name!r}: not a namespace name (no '/', '.' or '..'); give a name that "
            "ip netns list shows"
        )
    if size > NAME_MAX:
        raise InputError(
            f"--netns {name[:40]}...: {size} bytes, over the kernel's {NAME_MAX}-byte limit on "
            "a file name; give a name that ip netns list shows"
        )
    if not name.isprintable():
        raise InputError(
            f"--netns {name!r}: holds unprintable characters; give a name that ip netns list shows"
        )
    return name


# --- saved plans ------------------------------------------------------------------------------

SAVED_PLAN_KIND = "passtplan-saved-plan"
SAVED_PLAN_VERSIONS = ("1.0",)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SAVED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format_version": str,
    "kind": str,
    "lab": str,
    "lab_sha256": str,
    "sandbox": bool,
    "destroy": bool,
    "fingerprint": str,
    "changes": list,
}


def looks_like_saved_plan(raw: bytes) -> bool:
    """Whether a file given as a lab is a saved plan (JSON naming its kind) rather than a lab."""
    return raw.lstrip()[:1] == b"{" and SAVED_PLAN_KIND.encode() in raw[:4096]


def saved_plan(path: Path, raw: bytes) -> dict[str, object]:
    """A saved plan, checked as a schema-versioned document: every field there, of its type."""
    fix = f"make it again with passtplan plan LAB --out {path}"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid saved plan (broken JSON: {exc}); {fix}") from None
    if not isinstance(data, dict) or data.get("kind") != SAVED_PLAN_KIND:
        raise InputError(f"{path}: not a saved plan (no kind: {SAVED_PLAN_KIND}); {fix}")
    version = data.get("format_version")
    if version not in SAVED_PLAN_VERSIONS:
        known = ", ".join(SAVED_PLAN_VERSIONS)
        raise InputError(
            f"{path}: saved plan format_version {version!r} is not one this passtplan reads "
            f"({known}); {fix}"
        )
    for name, kind in SAVED_FIELDS.items():
        if name not in data:
            raise InputError(f"{path}: the saved plan has no {name!r}; {fix}")
        if not isinstance(data[name], kind) or (kind is not bool and isinstance(data[name], bool)):
            raise InputError(f"{path}: the saved plan's {name!r} has the wrong type; {fix}")
    targets = data.setdefault("targets", [])  # optional: saved plans before --target had none
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise InputError(f"{path}: the saved plan's 'targets' has the wrong type; {fix}")
    if not SHA256.match(str(data["lab_sha256"])) or not data["lab"]:
        raise InputError(f"{path}: the saved plan's lab or lab_sha256 is malformed; {fix}")
    return data


# --- the lab's record under /run/passtplan --------------------------------------------------


def state_error(path: Path, problem: str) -> InputError:
    return InputError(
        f"{path}: {problem}; remove it, then passtplan will rebuild what it can from the marks "
        "on the lab's links (what else the lab made is then left alone)"
    )


def read_state(path: Path) -> bytes | None:
    """A file of the lab's record, or None when there is none yet."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise state_error(path, f"cannot be read ({exc.strerror})") from None
    kind = _kind(found.st_mode)
    if kind is not None:
        raise state_error(path, f"is {kind}, not passtplan's record")
    try:
        return read_file(path, what="record", limit=MAX_STATE_BYTES)
    except InputError as exc:
        raise state_error(path, str(exc).split(": ", 1)[-1].split(";")[0]) from None


def state_json(path: Path) -> object | None:
    """The JSON document in a record file, None when there is none."""
    raw = read_state(path)
    if raw is None:
        return None
    try:
        found: object = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise state_error(path, "is not valid JSON (cut short or overwritten)") from None
    return found


def state_lines(path: Path, *, torn_tail: bool = True) -> list[object]:
    """The JSON lines of a log; a last line cut short by a kill is dropped when `torn_tail`."""
    raw = read_state(path)
    if raw is None:
        return []
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise state_error(path, "is not text") from None
    found = []
    for number, line in enumerate(lines, 1):
        try:
            found.append(json.loads(line))
        except ValueError:
            if torn_tail and number == len(lines) and not raw.endswith(b"\n"):
                break  # the last write, cut short by a kill
            raise state_error(path, f"line {number} is not valid JSON") from None
    return found
