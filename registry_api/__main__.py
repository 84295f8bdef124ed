"""``python -m registry_api [--host H] [--port P] [--grpc-port G]``: serve the registry.

Settings come from the environment (``PERSONA_*``); with none set this is the embedded
default: a SQLite file and a blob folder under ``.persona``.
"""

from __future__ import annotations

import argparse

from persona_core.logging import configure_logging
from registry_api.config import ApiSettings
from registry_api.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m registry_api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=None, help="also serve gRPC here (0 = off)")
    parser.add_argument("--workers", type=int, default=None, help="HTTP worker processes (default: cores)")
    args = parser.parse_args(argv)
    settings = ApiSettings()
    # persona-core's handler: JSON when asked, and the settings' secrets redacted from every line.
    configure_logging(settings=settings)
    serve(settings, host=args.host, port=args.port, grpc_port=args.grpc_port, workers=args.workers)


if __name__ == "__main__":
    main()
