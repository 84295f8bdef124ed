"""Fixtures for the registry tests; shared helpers live in registry_support (a unique module
name, so `from ... import` never picks up another folder's conftest)."""

from registry_support import registry

__all__ = ["registry"]
