"""Fixtures for the pipeline tests; shared helpers live in pipeline_support (a unique module
name, so `from ... import` never picks up another folder's conftest)."""

from pipeline_support import home

__all__ = ["home"]
