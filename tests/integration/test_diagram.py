"""`diagram --live` on an applied lab: a link deleted behind the lab's back is drawn missing, a
link the lab does not declare is drawn foreign, the rest as declared."""

from __future__ import annotations

from collections.abc import Callable

from pyroute2 import NetNS

from tests.integration.conftest import Lab
from tests.test_diagram import parse

BRIDGED = """
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  a:
    links:
      br0: {kind: bridge, addresses: [10.9.0.1/24]}
      v0: {kind: veth, peer: b/v0, master: br0}
  b:
    links:
      v0: {kind: veth, peer: a/v0, addresses: [10.9.0.2/24]}
    routes:
      - {to: 10.19.0.0/16, via: 10.9.0.1}
"""


def test_live_shows_a_deleted_link_missing_and_an_undeclared_one_foreign(
    make_lab: Callable[[str], Lab],
) -> None:
    lab = make_lab(BRIDGED)
    lab.apply()
    before = parse(lab.run("diagram", str(lab.path), "--live").stdout)
    assert 'color="black"' in before.label("link.a/br0")
    assert "missing" in before.label("legend")  # the legend explains every live status
    with NetNS(lab.netns("a")) as ns:
        ns.link("del", index=ns.link_lookup(ifname="br0")[0])
    with NetNS(lab.netns("b")) as ns:
        ns.link("add", ifname="extra0", kind="bridge")
    after = parse(lab.run("diagram", str(lab.path), "--live").stdout)
    missing = after.label("link.a/br0")
    assert 'color="red"' in missing and "dashed" in missing
    assert 'color="red"' in after.edges["link.a/v0", "link.a/br0"]  # its port's tie too
    assert 'color="red"' not in after.label("link.b/v0")
    assert 'color="gray60"' in after.label("link.b/extra0")
    with NetNS(lab.netns("b")) as ns:  # destroy leaves a namespace holding what it did not make
        ns.link("del", index=ns.link_lookup(ifname="extra0")[0])
    lab.destroy()
    assert lab.leftovers() == []
