"""The shared model registry with the builder's models registered (see ``__init__``): the same
functions as ``persona_core.vision.registry``, importable from the pipeline's side."""

from persona_core.vision.registry import (
    TASKS,
    WEIGHTS_DIR,
    backend_module,
    cache_dir,
    clear_cache,
    default_model,
    default_model_name,
    get_entry,
    list_models,
    load_model,
    model_dir_from_env,
    register,
    resolve_file,
    sha256_file,
)

__all__ = [
    "TASKS",
    "WEIGHTS_DIR",
    "backend_module",
    "cache_dir",
    "clear_cache",
    "default_model",
    "default_model_name",
    "get_entry",
    "list_models",
    "load_model",
    "model_dir_from_env",
    "register",
    "resolve_file",
    "sha256_file",
]
