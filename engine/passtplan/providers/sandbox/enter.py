"""`python -m passtplan.providers.sandbox.enter NETNS [--nofile] -- COMMAND...`: run COMMAND in
a network namespace, as `ip netns exec` does, without a shell and without forking from a threaded
process.

With --nofile the soft open-files limit is raised to the hard one first: passt binds one socket
per forwarded port and family.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from passtplan.providers import kernel


def main(argv: list[str]) -> None:
    separator = argv.index("--")
    options, command = argv[:separator], argv[separator + 1 :]
    if "--nofile" in options:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        kernel.enter(Path(options[0]))
    except OSError as exc:
        sys.exit(f"enter: {exc}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
