"""Exceptions for bad user input. The CLI turns each into one line and exit code 2."""


class StnasError(Exception):
    """Base class: a problem with what the user handed in, not a bug."""


class SpaceError(StnasError):
    """A search-space config (preset or YAML file) is invalid."""


class ArchError(StnasError):
    """An architecture string or JSON file is invalid for its space."""


class ConfigError(StnasError):
    """A run config, CLI override or run directory is invalid."""


class DataError(StnasError):
    """A dataset cannot be found or read."""


class CheckpointError(StnasError):
    """A checkpoint or weights file is missing, truncated or corrupted."""
