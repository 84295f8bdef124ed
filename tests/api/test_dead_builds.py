"""A version whose build process is gone is failed when someone looks at it through the
registry (GET a version, list versions over HTTP or gRPC), not only through the CLI or a sensor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
from registry_support import OTHER, make_registry

from persona_core.store.base import BuildLease
from persona_core.versions import DIED_PREFIX, LeaseKeeper
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def test_the_registry_fails_a_dead_build_when_someone_looks(tmp_path: Path) -> None:
    """GET a version, list versions over HTTP, list them over gRPC: each settles a dead build."""
    reg = make_registry(tmp_path / "reg")

    def dead_build() -> int:
        v = reg.meta.create_version(OTHER, {"files": []}).version
        gone = BuildLease(host=BuildLease.here().host, pid=_dead_pid(), run_id="")
        reg.meta.claim(OTHER, v, gone)
        return v

    dead_build()
    alive = reg.meta.create_version(OTHER, {"files": []}).version
    LeaseKeeper(reg.meta, OTHER, alive, heartbeat_s=30).start()
    got = reg.http.get(f"/v1/personas/{OTHER}/versions/1", headers=reg.headers("read")).json()
    assert (got["status"], got["reasons"][0].split(" (")[0]) == ("failed", DIED_PREFIX)

    listed_dead = dead_build()  # each door below meets a dead build nothing has settled yet
    listed = reg.http.get(f"/v1/personas/{OTHER}/versions", headers=reg.headers("read")).json()
    assert {d["version"]: d["status"] for d in listed["items"]} == {1: "failed", alive: "building",
                                                                    listed_dead: "failed"}
    grpc_dead = dead_build()
    server, port = start_grpc_server(reg.service, 0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = pb_grpc.PersonaRegistryStub(channel).ListPersonaVersions(
                pb.ListPersonaVersionsRequest(persona_id=OTHER), metadata=(("x-api-key", reg.keys["read"]),)
            )
    finally:
        server.stop(grace=None)
    assert {v.version: v.status for v in reply.versions} == {1: "failed", alive: "building",
                                                             listed_dead: "failed", grpc_dead: "failed"}
    # It is stored: whoever looks next (the CLI, the sensor) sees the same.
    assert reg.meta.get_version(OTHER, grpc_dead).reasons[0].startswith(DIED_PREFIX)
    reg.http.close()
    reg.meta.close()
