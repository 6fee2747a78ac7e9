"""Stand-ins for `ssh` and `scp` that reach only `localhost` (and 127.0.0.1).

`ssh [-o OPT]... [-p PORT] [-i KEY] HOST COMMAND...` runs COMMAND with `sh -c` on this machine,
with standard input passed through, as the real ssh runs it on the remote host; any other host
fails with ssh's own message and exit status 255. `scp [-q] [-o OPT]... FILE... HOST:DIR/` copies
the files into DIR locally.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REACHABLE = {"localhost", "127.0.0.1"}
WITH_VALUE = {"-o", "-p", "-P", "-i", "-l", "-F"}


def split_options(args: list[str]) -> list[str]:
    rest = []
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg in WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-") and not rest:
            continue
        rest = args[index:]
        break
    return rest


def host_of(target: str) -> str:
    return target.split("@", 1)[-1]


def ssh(args: list[str]) -> int:
    rest = split_options(args)
    if not rest:
        print("usage: ssh destination [command]", file=sys.stderr)
        return 255
    host, command = host_of(rest[0]), " ".join(rest[1:])
    if host not in REACHABLE:
        print(f"ssh: connect to host {host} port 22: Connection refused", file=sys.stderr)
        return 255
    return subprocess.run(["sh", "-c", command], stdin=sys.stdin).returncode


def scp(args: list[str]) -> int:
    rest = split_options(args)
    if len(rest) < 2 or ":" not in rest[-1]:
        print("usage: scp source ... [user@]host:target", file=sys.stderr)
        return 1
    target_host, target_dir = rest[-1].split(":", 1)
    if host_of(target_host) not in REACHABLE:
        print(f"ssh: connect to host {host_of(target_host)} port 22: Connection refused", file=sys.stderr)
        return 255
    directory = Path(target_dir)
    if not directory.is_dir():
        print(f"scp: {target_dir}: No such file or directory", file=sys.stderr)
        return 1
    for source in rest[:-1]:
        shutil.copy(source, directory / Path(source).name)
    return 0


if __name__ == "__main__":
    tool, arguments = sys.argv[1], sys.argv[2:]
    sys.exit(ssh(arguments) if tool == "ssh" else scp(arguments))
