"""Every command against a corpus of bad inputs: each is refused with one clean line, exit 1 (2
for the CLI's own usage errors), no traceback, no hang, and nothing changed on the machine.

The corpus: tests/fixtures/inputs/ (bad YAML, depths, names) and what cannot be committed,
made in a temporary folder (a FIFO, a 5 MiB file, folders, links, saved plans, the lab's record
under /run/passtplan). The CLI runs in process; a FIFO runs it in a subprocess with a timeout,
so a regression that opens the FIFO is a timeout, not a hung suite. As root, the namespaces, the
root namespace's links, addresses and routes, and the lab's record are compared before and after
each case.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from passtplan.cli import app
from passtplan.providers.ownership import RUN_DIR
from tests.conftest import FIXTURES, PLANS, REPO

ROOT = os.geteuid() == 0
CORPUS = FIXTURES / "inputs"
TIMEOUT = 30.0
RUN_PREFIX = f"ptin{secrets.token_hex(3)}"  # labs of this run: their records are removed after
LAB_COMMANDS = ("validate", "plan", "apply", "destroy", "graph", "check", "ssh", "console", "show")
ENGINE_COMMANDS = ("plan", "apply", "destroy")  # the ones that read the lab's record


def argv(command: str, path: str) -> list[str]:
    """How each command takes a lab path."""
    if command == "show":
        return ["show", "--lab", path]
    if command in ("apply", "destroy"):
        return [command, path, "--auto-approve"]
    if command in ("ssh", "console"):
        return [command, path, "vm1"]
    return [command, path]


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    code: int = 1
    expect: str = ""  # a piece of the error line
    subprocess: bool = False
    needs_root: bool = False


# --- the corpus ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The inputs that cannot be committed, made once for the module."""
    base = tmp_path_factory.mktemp("inputs")
    os.mkfifo(base / "fifo.yaml")
    (base / "empty-folder").mkdir()
    (base / "folder-with-folder" / "lab.yaml").mkdir(parents=True)
    (base / "folder-with-fifo-lab").mkdir()
    os.mkfifo(base / "folder-with-fifo-lab" / "lab.yaml")
    (base / "big.yaml").write_bytes(b"# padding\n" * (520 * 1024))  # 5.1 MiB
    (base / "file").write_text("x: 1\n")
    (base / "dangling.yaml").symlink_to(base / "nowhere.yaml")
    (base / "loop-a.yaml").symlink_to(base / "loop-b.yaml")
    (base / "loop-b.yaml").symlink_to(base / "loop-a.yaml")
    lab = base / "good" / "lab.yaml"
    lab.parent.mkdir()
    shutil.copy(PLANS / "veth-pair" / "lab.yaml", lab)
    _saved_plans(base, lab)
    yield base
    for path in RUN_DIR.glob(f"{RUN_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in (RUN_DIR / "locks").glob(f"{RUN_PREFIX}*"):  # the labs' lock files
        path.unlink(missing_ok=True)


def _saved(lab_file: Path, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {
        "format_version": "1.0",
        "kind": "passtplan-saved-plan",
        "lab": str(lab_file),
        "lab_sha256": hashlib.sha256(lab_file.read_bytes()).hexdigest(),
        "sandbox": False,
        "destroy": False,
        "fingerprint": "0" * 64,
        "changes": [],
    }
    data.update(fields)
    return data


SAVED_FIELDS = (
    "format_version",
    "lab",
    "lab_sha256",
    "sandbox",
    "destroy",
    "fingerprint",
    "changes",
)
SAVED_BAD = {
    "version-future": {"format_version": "9.0"},
    "version-number": {"format_version": 1.0},
    "lab-number": {"lab": 7},
    "lab-empty": {"lab": ""},
    "sha-short": {"lab_sha256": "abc"},
    "sandbox-string": {"sandbox": "yes"},
    "sandbox-number": {"sandbox": 1},
    "changes-mapping": {"changes": {}},
    "fingerprint-null": {"fingerprint": None},
    "lab-gone": {"lab": "/nonexistent/passtplan/lab.yaml"},
    "lab-changed": {"lab_sha256": "f" * 64},
    "lab-is-fifo": {"lab": "FIFO"},
}


def _saved_plans(base: Path, lab: Path) -> None:
    folder = base / "saved"
    folder.mkdir()
    for destroy in (False, True):
        tag = "destroy" if destroy else "apply"
        for name in SAVED_FIELDS:
            data = _saved(lab, destroy=destroy)
            del data[name]
            (folder / f"{tag}-no-{name}.json").write_text(json.dumps(data))
        for name, bad in SAVED_BAD.items():
            fields = {k: str(base / "fifo.yaml") if v == "FIFO" else v for k, v in bad.items()}
            data = _saved(lab, destroy=destroy, **fields)
            (folder / f"{tag}-{name}.json").write_text(json.dumps(data))
        broken = json.dumps(_saved(lab, destroy=destroy))[:-20]
        (folder / f"{tag}-truncated.json").write_text(broken)
    (folder / "destroy-given-apply-plan.json").write_text(json.dumps(_saved(lab, destroy=False)))


def path_cases() -> list[Case]:
    """Bad lab paths and bad lab files, through every command that takes a lab."""
    bad: list[tuple[str, str, str, bool]] = [  # (name, path, expected, subprocess)
        ("missing", "{s}/nope.yaml", "no such file", False),
        ("missing-folder", "{s}/nope/lab.yaml", "no such file", False),
        ("empty-folder", "{s}/empty-folder", "folder without a lab.yaml", False),
        ("lab-is-folder", "{s}/folder-with-folder", "is a folder", False),
        ("fifo", "{s}/fifo.yaml", "FIFO", True),
        ("folder-fifo-lab", "{s}/folder-with-fifo-lab", "FIFO", True),
        ("device", "/dev/null", "is a device", False),
        ("too-big", "{s}/big.yaml", "over the 4.0 MiB limit", False),
        ("through-a-file", "{s}/file/lab.yaml", "not a folder", False),
        ("name-too-long", "{s}/" + "n" * 300 + ".yaml", "File name too long", False),
        ("dangling-link", "{s}/dangling.yaml", "no such file", False),
        ("link-loop", "{s}/loop-a.yaml", "symbolic links", False),
        ("binary", "{c}/binary.yaml", "binary file", False),
        ("latin1", "{c}/latin1.yaml", "not UTF-8", False),
        ("nul-byte", "{c}/nul-byte.yaml", "binary file", False),
        ("control-char", "{c}/control-char.yaml", "not allowed", False),
        ("empty", "{c}/empty.yaml", "empty", False),
        ("comment-only", "{c}/comment-only.yaml", "empty", False),
        ("deep-flow", "{c}/deep-flow.yaml", "nesting depth", False),
        ("deep-mapping", "{c}/deep-mapping.yaml", "nesting depth", False),
        ("deep-walker", "{c}/deep-walker.yaml", "levels deep", False),
        ("laughs", "{c}/laughs.yaml", "nodes", False),
        ("self-alias", "{c}/self-alias.yaml", "contains it", False),
        ("two-documents", "{c}/two-documents.yaml", "second YAML document", False),
        ("not-a-mapping", "{c}/not-a-mapping.yaml", "must be a mapping", False),
        ("unknown-tag", "{c}/unknown-tag.yaml", "unknown tag", False),
        ("json-not-saved", "{c}/json-not-saved.yaml", "required field is missing", False),
        ("lab-name-too-long", "{c}/lab-name-too-long.yaml", "1-63", False),
        ("ifname-too-long", "{c}/ifname-too-long.yaml", "at most 15", False),
        ("ifname-slash", "{c}/ifname-slash.yaml", "refuses", False),
        ("namespace-bad-chars", "{c}/namespace-bad-chars.yaml", "1-63", False),
    ]
    return [
        Case(
            f"{command}-{name}",
            tuple(argv(command, path)),
            expect=expected,
            subprocess=fork,
        )
        for name, path, expected, fork in bad
        for command in LAB_COMMANDS
    ]


def saved_cases() -> list[Case]:
    cases = []
    for tag in ("apply", "destroy"):
        names = [f"no-{n}" for n in SAVED_FIELDS] + [*SAVED_BAD, "truncated"]
        for name in names:
            expect = {
                "lab-gone": "cannot be read",
                "lab-changed": "changed since the plan was saved",
                "lab-is-fifo": "FIFO",
                "truncated": "broken JSON",
                "version-future": "format_version",
                "version-number": "format_version",
                "no-format_version": "format_version",
            }.get(name, "saved plan")
            path = f"{{s}}/saved/{tag}-{name}.json"
            cases.append(Case(f"saved-{tag}-{name}", (tag, path, "--auto-approve"), expect=expect))
    cases.append(
        Case(
            "saved-destroy-given-apply-plan",
            ("destroy", "{s}/saved/destroy-given-apply-plan.json", "--auto-approve"),
            expect="not to destroy",
        )
    )
    return cases


def out_cases() -> list[Case]:
    good = "{s}/good/lab.yaml"
    bad = [
        ("missing-folder", "{s}/nope/plan.json", "does not exist"),
        ("folder", "{s}/empty-folder", "is a folder"),
        ("fifo", "{s}/fifo.yaml", "FIFO"),
        ("device", "/dev/null", "is a device"),
        ("under-a-file", "{s}/file/plan.json", "is not a folder"),
        ("the-lab-itself", good, "is the lab file itself"),
        ("name-too-long", "{s}/" + "o" * 300, "File name too long"),
    ]
    return [
        Case(f"plan-out-{name}", ("plan", good, "--out", out), expect=expected)
        for name, out, expected in bad
    ]


def netns_cases() -> list[Case]:
    bad = [
        ("dotdot", "..", "not a namespace name"),
        ("dot", ".", "not a namespace name"),
        ("slash", "a/b", "not a namespace name"),
        ("escape", "../../etc", "not a namespace name"),
        ("too-long", "n" * 300, "255-byte limit"),
        ("empty", "", "empty name"),
        ("unprintable", "a\tb", "unprintable"),
        ("nul", "a\x01b", "unprintable"),
    ]
    cases = [Case(f"show-netns-{n}", ("show", "--netns", v), expect=e) for n, v, e in bad]
    cases.append(
        Case(
            "show-netns-missing",
            ("show", "--netns", f"{RUN_PREFIX}-none"),
            expect="no such network namespace",
            needs_root=True,
        )
    )
    return cases


def usage_cases() -> list[Case]:
    """The CLI's own usage errors: exit 2, as click has it."""
    return [
        *(
            Case(f"{c}-no-argument", (c,), code=2, expect="Missing argument")
            for c in LAB_COMMANDS[:-1]
        ),
        Case("graph-bad-format", ("graph", "{s}/good", "--format", "png"), code=2, expect="png"),
        Case("plan-out-no-value", ("plan", "{s}/good", "--out"), code=2, expect="requires"),
    ]


STATE_FILES: dict[str, tuple[str, bytes | None, str]] = {  # name: (file, content, expected)
    "owned-truncated": ("owned.json", b'{"namespaces": ["left"', "not valid JSON"),
    "owned-list": ("owned.json", b"[]", "not a JSON object"),
    "owned-number": ("owned.json", b"42", "not a JSON object"),
    "owned-names-wrong": ("owned.json", b'{"namespaces": "left"}', "not a list of names"),
    "owned-sysctls-wrong": ("owned.json", b'{"sysctls": ["x"]}', "not a mapping"),
    "owned-binary": ("owned.json", b"\xff\xfe\x00\x01", "not valid JSON"),
    "owned-folder": ("owned.json", None, "is a folder"),
    "log-not-event": ("owned.log", b'{"op": "claim"}\n', "not a record event"),
    "log-bad-kind": (
        "owned.log",
        b'{"op": "claim", "kind": "__class__", "address": "x", "value": ""}\n',
        "not a record event",
    ),
    "log-garbage-middle": ("owned.log", b"garbage\n{}\n", "line 1 is not valid JSON"),
    "log-folder": ("owned.log", None, "is a folder"),
    "journal-garbage": ("journal.jsonl", b"not json\n", "line 1 is not valid JSON"),
    "journal-wrong-type": ("journal.jsonl", b"[1, 2]\n", "not a journal entry"),
    "journal-folder": ("journal.jsonl", None, "is a folder"),
}


def state_cases() -> list[Case]:
    return [
        Case(
            f"{command}-state-{name}",
            tuple(argv(command, f"{{state:{name}}}")),
            expect=expected,
            needs_root=True,
        )
        for name, (_, _, expected) in STATE_FILES.items()
        for command in ENGINE_COMMANDS
    ]


def name_cases() -> list[Case]:
    lab = str(CORPUS / "long-vm-lab")
    return [
        Case(f"{c}-sandbox-socket-too-long", (*argv(c, lab), "--sandbox"), expect="107-byte")
        for c in ("plan", "apply", "destroy", "graph")
    ]


CASES = [
    *path_cases(),
    *saved_cases(),
    *out_cases(),
    *netns_cases(),
    *usage_cases(),
    *state_cases(),
    *name_cases(),
]


# --- running a case -----------------------------------------------------------------------------


def state_lab(scratch: Path, name: str) -> str:
    """A lab with its own name whose record under /run/passtplan holds one corrupt file."""
    lab_name = f"{RUN_PREFIX}-{name}"
    folder = scratch / "state" / name
    folder.mkdir(parents=True, exist_ok=True)
    text = (PLANS / "veth-pair" / "lab.yaml").read_text()
    (folder / "lab.yaml").write_text(text.replace("name: veth-pair", f"name: {lab_name}"))
    record = RUN_DIR / lab_name
    shutil.rmtree(record, ignore_errors=True)
    record.mkdir(parents=True)
    file, content, _ = STATE_FILES[name]
    if content is None:
        (record / file).mkdir()
    else:
        (record / file).write_bytes(content)
    return str(folder / "lab.yaml")


def resolve_args(case: Case, scratch: Path) -> list[str]:
    out = []
    for arg in case.args:
        if arg.startswith("{state:"):
            out.append(state_lab(scratch, arg.removeprefix("{state:").removesuffix("}")))
        else:
            out.append(arg.replace("{s}", str(scratch)).replace("{c}", str(CORPUS)))
    return out


# The names of the corpus's labs: what a command that went too far would have made. (Other
# namespaces and records come and go with whatever else runs on the machine.)
ISSUE = re.compile(r"^\S[^:]*:\d+:\d+: ")
LAB_NAMES = (RUN_PREFIX, "veth-pair", "x-", "l" * 60)
VOLATILE = {"stats64", "stats", "operstate", "linkmode", "valid_life_time", "preferred_life_time"}


def ours(name: str) -> bool:
    return name.startswith(LAB_NAMES)


def machine() -> dict[str, object]:
    """What a refused command must leave as it was."""
    found: dict[str, object] = {"records": _records()}
    if ROOT:
        netns = os.listdir("/run/netns") if Path("/run/netns").is_dir() else []
        found["netns"] = sorted(n for n in netns if ours(n))
        for what in (("address", "show"), ("route", "show", "table", "all")):
            proc = subprocess.run(
                ["ip", "-j", *what], capture_output=True, text=True, check=True, timeout=30
            )
            found[what[0]] = _without(json.loads(proc.stdout or "[]"), VOLATILE)
    return found


def _without(data: object, keys: set[str]) -> object:
    if isinstance(data, dict):
        return {k: _without(v, keys) for k, v in data.items() if k not in keys}
    if isinstance(data, list):
        return [_without(v, keys) for v in data]
    return data


def _records() -> dict[str, str]:
    """Every file of the corpus's labs under /run/passtplan, with a hash of its content."""
    found = {}
    if RUN_DIR.is_dir():
        records = [p for p in RUN_DIR.iterdir() if ours(p.name)]
        for path in sorted(p for record in records for p in [record, *record.rglob("*")]):
            if path.is_file() and not path.is_symlink():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                found[str(path)] = "dir"
    return found


def run_cli(args: list[str], *, fork: bool) -> tuple[int, str, str]:
    if fork:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "engine"), str(REPO)])}
        proc = subprocess.run(
            [sys.executable, "-m", "passtplan", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        return proc.returncode, proc.stdout, proc.stderr
    result = CliRunner().invoke(app, args, catch_exceptions=True)
    exception = result.exception
    if exception is not None and not isinstance(exception, SystemExit):
        raise AssertionError(f"internal error: {type(exception).__name__}: {exception}")
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_refused_cleanly(case: Case, scratch: Path) -> None:
    if case.needs_root and not ROOT:
        pytest.skip("needs root")
    args = resolve_args(case, scratch)
    before = machine()
    code, stdout, stderr = run_cli(args, fork=case.subprocess)
    after = machine()
    assert "Traceback" not in stdout + stderr
    assert "internal error" not in stderr
    lines = [line for line in stderr.splitlines() if line and ": warning:" not in line]
    if not ROOT and code == 1 and lines and "needs root" in lines[0]:
        pytest.skip("the input passed the gate; the command needs root")
    assert code == case.code, f"exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    if case.code == 1:
        # one line, or one line per problem of the lab's content (validate's FILE:LINE:COL)
        assert lines, "no error shown"
        assert len(lines) == 1 or all(ISSUE.match(line) for line in lines), stderr
    assert case.expect in stderr, stderr
    assert after == before, "the machine changed"


def test_the_corpus_covers_every_command() -> None:
    counts = corpus_counts()
    assert sum(counts.values()) >= 150
    assert set(counts) >= {"validate", "plan", "apply", "destroy", "graph", "check", "show"}


def corpus_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for case in CASES:
        counts[case.args[0]] = counts.get(case.args[0], 0) + 1
    return counts
