"""`python -m passtplan.providers.enter NETNS [--nofile] -- COMMAND...`: run COMMAND in a network
namespace, as `ip netns exec` does, without a shell and without forking from a threaded process.

With --nofile the soft open-files limit is raised to the hard one first: passt binds one socket
per forwarded port and family.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys

CLONE_NEWNET = 0x40000000


def main(argv: list[str]) -> None:
    separator = argv.index("--")
    options, command = argv[:separator], argv[separator + 1 :]
    netns = options[0]
    if "--nofile" in options:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fd = os.open(netns, os.O_RDONLY)
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        sys.exit(f"enter: setns {netns}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
