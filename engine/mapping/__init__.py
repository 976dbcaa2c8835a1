"""The mapping language: a destination's YAML file read with positions (yaml_reader),
checked against its schema (schema), loaded with `extends` (loader), compiled (compiler,
templates, expressions, in the sandbox with the functions authors can call), and run per
event (destination). preview turns outcomes into the records people read."""

from __future__ import annotations

from .casing import snake_case
from .destination import BoundDestination, Destination, Example
from .loader import check, load, mapping_files
from .preview import preview

__all__ = ["BoundDestination", "Destination", "Example", "check", "load", "mapping_files",
           "preview", "snake_case"]
