"""The floor everything stands on: errors, files and their checksums, checkpoints, the run
directory, processes, limits and units. Imports nothing else of stnas."""

__version__ = "0.1.0"
