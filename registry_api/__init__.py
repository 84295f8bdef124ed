"""The persona registry: a FastAPI app and a gRPC server over one service layer."""
