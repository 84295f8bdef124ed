"""Per-input result cache in the blob store (named objects under ``cache/``).

A result is keyed by (step, input sha256, model names + weight sha256s, config
fingerprint), so a new version that changes one of twenty inputs recomputes only that
input, and the cache works the same on a local folder and on S3. Counters say how many
results were computed and how many came from the cache; assets report them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from persona_core.embeddings import float32_from_npy, float32_to_npy
from persona_core.errors import BlobNotFoundError, IntegrityError, InvalidInputError
from persona_core.store.base import BlobStore

# Bump when a step's cached result format or meaning changes.
CACHE_FORMAT = "1"


def model_fingerprint(models: Iterable[Any]) -> list[list[Any]]:
    """[name, weights] for each model, the part of a cache key that names the models."""
    return [[m.entry.name, list(m.weights_sha256)] for m in models]


@dataclass
class StepCache:
    blobs: BlobStore
    step: str
    fingerprint: str
    computed: int = 0
    cached: int = 0
    computed_names: list[str] = field(default_factory=list)

    @classmethod
    def for_step(
        cls, blobs: BlobStore, step: str, models: Sequence[Any] = (), config: str = ""
    ) -> StepCache:
        doc = {"format": CACHE_FORMAT, "step": step, "models": model_fingerprint(models), "config": config}
        return cls(blobs, step, hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest())

    def _key(self, input_sha256: str) -> str:
        digest = hashlib.sha256(f"{self.fingerprint}:{input_sha256}".encode()).hexdigest()
        return f"cache/{self.step}/{digest}"

    def get_bytes(self, input_sha256: str) -> bytes | None:
        try:
            data = self.blobs.get_object(self._key(input_sha256))
        except (BlobNotFoundError, IntegrityError):
            return None
        self.cached += 1
        return data

    def put_bytes(self, input_sha256: str, data: bytes, name: str = "") -> None:
        self.blobs.put_object(self._key(input_sha256), data)
        self.computed += 1
        self.computed_names.append(name or input_sha256[:12])

    def get_json(self, input_sha256: str) -> Any | None:
        data = self.get_bytes(input_sha256)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            # A damaged cache entry is recomputed, never trusted.
            self.cached -= 1
            return None

    def put_json(self, input_sha256: str, doc: Any, name: str = "") -> None:
        self.put_bytes(input_sha256, json.dumps(doc, sort_keys=True).encode(), name)

    def get_vector(self, input_sha256: str) -> np.ndarray | None:
        data = self.get_bytes(input_sha256)
        if data is None:
            return None
        try:
            return float32_from_npy(data)
        except InvalidInputError:
            self.cached -= 1
            return None

    def put_vector(self, input_sha256: str, vector: np.ndarray, name: str = "") -> None:
        if vector.ndim != 1:
            raise InvalidInputError(f"cached vectors are 1-D, got shape {vector.shape}")
        self.put_bytes(input_sha256, float32_to_npy(vector), name)

    def counters(self) -> dict[str, int]:
        return {"computed": self.computed, "cached": self.cached}
