"""The CLI conventions on live labs: colour on a terminal, -o, show SAVED_PLAN, list, --verbose."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable

import yaml

from tests.integration.conftest import TWO, Lab
from tests.test_conventions import passtplan

LAB = (
    TWO
    + """checks:
  - {from: a, ping: 10.0.0.2}
"""
)
GREEN_PLUS = "\033[32m+\033[0m"


def on_a_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """What the CLI writes when its stdout is a pseudo-terminal."""
    leader, follower = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    with subprocess.Popen(
        [sys.executable, "-m", "passtplan", *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**environment, "TERM": "xterm", **(env or {})},
    ) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_colour_on_a_terminal_and_off_when_asked(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(LAB)
    coloured = on_a_terminal("plan", str(lab.path))
    assert f"  {GREEN_PLUS} link.a/v0\n" in coloured
    assert "\033[1mPlan:\033[0m 7 to add" in coloured
    plain = lab.plan().stdout  # not a terminal
    assert "\033[" not in plain
    assert on_a_terminal("plan", str(lab.path), env={"NO_COLOR": "1"}) == plain
    assert on_a_terminal("plan", str(lab.path), "--no-color") == plain
    assert on_a_terminal("--no-color", "plan", str(lab.path)) == plain
    lab.apply()
    checks = on_a_terminal("check", str(lab.path))
    assert "\033[32mpass\033[0m" in checks
    assert "\033[" not in on_a_terminal("check", str(lab.path), "--no-color")
    destroyed = on_a_terminal("destroy", str(lab.path), "--auto-approve")
    assert "\033[31m-\033[0m netns.a\n" in destroyed
    assert "\033[1;32mDestroy complete!\033[0m" in destroyed


def test_show_saved_plan_is_the_plan_as_printed(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(LAB)
    saved = lab.directory / "saved.json"
    printed = lab.plan("--out", str(saved)).stdout
    shown = lab.run("show", str(saved)).stdout
    assert printed == shown + f"\nSaved the plan to {saved}; apply exactly it with: " + (
        f"passtplan apply {saved}\n"
    )
    as_json = json.loads(lab.run("show", str(saved), "-o", "json").stdout)
    assert as_json == json.loads(lab.plan("-o", "json").stdout)
    assert as_json == json.loads(lab.plan("--json").stdout)
    assert yaml.safe_load(lab.run("show", str(saved), "-o", "yaml").stdout) == as_json
    assert yaml.safe_load(lab.plan("-o", "yaml").stdout) == as_json
    not_saved = lab.run("show", str(lab.path), code=1)
    assert "is a lab, not a plan saved by plan --out" in not_saved.stderr


def test_check_and_show_as_documents(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(LAB)
    lab.apply()
    checks = json.loads(lab.run("check", str(lab.path), "-o", "json").stdout)
    (ping,) = checks["checks"]
    assert (ping["kind"], ping["from"], ping["to"], ping["status"]) == (
        "ping",
        "a",
        "10.0.0.2",
        "pass",
    )
    assert ping["seconds"] >= 0
    assert checks["summary"] == {"passed": 1, "failed": 0, "not_run": 0, "skipped": 0}
    again = yaml.safe_load(lab.run("check", str(lab.path), "-o", "yaml").stdout)
    assert {**again, "checks": [{**c, "seconds": 0} for c in again["checks"]]} == {
        **checks,
        "checks": [{**c, "seconds": 0} for c in checks["checks"]],
    }
    netns = lab.netns("a")
    shown = json.loads(lab.run("show", "--netns", netns, "-o", "json").stdout)
    assert yaml.safe_load(lab.run("show", "--netns", netns, "-o", "yaml").stdout) == shown
    assert lab.run("show", "--netns", netns, "--json").stdout == json.dumps(shown, indent=2) + "\n"


def test_list_after_two_applies(make_lab: Callable[[str], Lab]) -> None:
    first, second = make_lab(LAB), make_lab(LAB)
    first.apply("--sandbox")
    second.apply("--sandbox")
    listed = json.loads(first.run("list", "-o", "json").stdout)["labs"]
    ours = {lab["lab"]: lab for lab in listed if lab["lab"] in (first.name, second.name)}
    assert sorted(ours) == sorted([first.name, second.name])
    for lab in ours.values():
        assert (lab["mode"], lab["namespaces"], lab["vms"]) == ("sandbox", ["a", "b"], [])
        assert lab["applied"] is not None
    text = first.run("list").stdout.splitlines()
    assert text[0].split() == ["LAB", "MODE", "NAMESPACES", "VMS", "APPLIED"]
    row = next(line for line in text if line.startswith(f"{first.name} "))
    assert row.split()[:4] == [first.name, "sandbox", "a,b", "-"]
    assert yaml.safe_load(first.run("list", "-o", "yaml").stdout)["labs"] == listed
    first.destroy("--sandbox")
    second.destroy("--sandbox")
    after = json.loads(first.run("list", "-o", "json").stdout)["labs"]
    assert not [lab for lab in after if lab["lab"] in (first.name, second.name)]


def test_verbose_logs_each_netlink_request(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(LAB)
    applied = passtplan("--verbose", "apply", str(lab.path), "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert "passtplan: pyroute2 in a: link('add', ifname='v0', kind='veth'" in applied.stderr
    assert "passtplan: netlink in a: 1 request (1 RTM_NEWADDR): ok [" in applied.stderr
    planned = passtplan("plan", str(lab.path), env={"PASSTPLAN_LOG": "debug"})
    assert "passtplan: netlink in b: dump RTM_GETLINK: ok [" in planned.stderr
    assert "netlink" not in passtplan("plan", str(lab.path)).stderr
