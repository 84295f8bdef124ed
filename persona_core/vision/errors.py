"""Typed errors of the model registry; all are ``PersonaCoreError`` with a stable ``code``."""

from __future__ import annotations

from persona_core.errors import IntegrityError, InvalidInputError, PersonaCoreError


class UnknownModelError(InvalidInputError, LookupError):
    """A model name the registry does not hold (a typo in a flag, a setting, a run config)."""

    code = "unknown_model"


class ModelTaskMismatchError(InvalidInputError):
    """A model named for one task (e.g. the detector) is registered for another."""

    code = "model_task_mismatch"


class ModelUnavailableError(PersonaCoreError):
    """No source of the weights could be used (not in the model dir, no package, download off)."""

    code = "model_unavailable"


class ModelChecksumError(IntegrityError):
    """A weight file does not hash to the sha256 pinned in its registry entry."""

    code = "model_checksum_mismatch"


class NonCommercialModelError(InvalidInputError):
    """The entry's weights are licensed for non-commercial use only and no opt-in was given."""

    code = "model_noncommercial"


class BadModelInputError(InvalidInputError):
    """An image/clip handed to a model is empty, of the wrong dtype or shape, or undecodable."""

    code = "bad_model_input"


class BadFrameError(BadModelInputError):
    """A frame to measure that is not an image: undecodable bytes, a missing file, a wrong array."""

    code = "bad_frame"


class IdentityModelMismatchError(IntegrityError):
    """The installed identity model's weights differ from those the pack was built with, so
    their embeddings are not comparable."""

    code = "identity_model_mismatch"


class VisionUnavailableError(PersonaCoreError):
    """OpenCV or onnxruntime is not installed (``pip install persona-core[vision]``)."""

    code = "vision_unavailable"
