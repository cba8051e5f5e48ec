"""Exceptions for bad user input. The CLI turns each into one line and exit code 2."""


class StnasError(Exception):
    """Base class: a problem with what the user handed in, not a bug."""


class SpaceError(StnasError):
    """A search-space config (preset or YAML file) is invalid."""


class ArchError(StnasError):
    """An architecture string or JSON file is invalid for its space."""


class ConfigError(StnasError):
    """A run config, CLI override or run directory is invalid."""


class LatencyTableError(ConfigError):
    """A latency table is missing, damaged, or for another space, device or runtime."""


class LatencyBudgetError(StnasError):
    """No candidate of a search measures within its latency budget (stnas.latency.budget)."""


class DataError(StnasError):
    """A dataset cannot be found or read."""


class CheckpointError(StnasError):
    """A checkpoint or weights file is missing, truncated or corrupted."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (for one-line errors), at most ``limit`` chars."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def state_dict_detail(exc: BaseException) -> str:
    """What ``load_state_dict``'s RuntimeError says is wrong: its first detail line (the one
    after ``Error(s) in loading state_dict ...:``, e.g. ``size mismatch for ...``), else its
    first line."""
    return next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), first_line(exc))
