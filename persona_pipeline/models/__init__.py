"""The builder's own model backends (style, matting, voice). Importing this package registers
their entries into the shared registry, ``persona_core.vision.registry``, which also holds the
face models (detection, alignment, identity) that builder and runtime share."""

from persona_core.vision import registry as _registry
from persona_pipeline.models.entries import ENTRIES

for _entry in ENTRIES:
    _registry.register(_entry, replace_existing=True)
