"""Regenerate ``registry_api/grpc_gen`` from ``schemas/persona_registry.proto``.

``python -m registry_api.protos`` rewrites the committed files; ``--check`` exits non-zero
when they are stale. The ``-I<virtual>=<physical>`` mapping makes the generated modules
import each other as ``registry_api.grpc_gen.*``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "schemas" / "persona_registry.proto"
GEN = ROOT / "registry_api" / "grpc_gen"
OUTPUTS = ("persona_registry_pb2.py", "persona_registry_pb2.pyi", "persona_registry_pb2_grpc.py")


def generate(out_root: Path) -> None:
    from grpc_tools import protoc  # noqa: PLC0415 - dev-only dependency (grpcio-tools)

    args = [
        "protoc",
        f"-Iregistry_api/grpc_gen={PROTO.parent}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"registry_api/grpc_gen/{PROTO.name}",
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = [
                n
                for n in OUTPUTS
                if (Path(tmp) / "registry_api" / "grpc_gen" / n).read_bytes() != (GEN / n).read_bytes()
            ]
        if stale:
            raise SystemExit(f"registry_api/grpc_gen is stale ({', '.join(stale)}): run `make proto`")
        return
    generate(ROOT)
    print(f"wrote {', '.join(OUTPUTS)} in {GEN}")


if __name__ == "__main__":
    main()
