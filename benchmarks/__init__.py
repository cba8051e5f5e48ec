"""The product benchmarks (docs/benchmarks.md): speed, memory and latency of stnas on this
machine. Each is a script run from the repository root, ``python benchmarks/NAME.py ...``
(``make bench`` runs them all), and a module, ``benchmarks.NAME``, that tests import to run
its bookkeeping on a tiny input. They import only stnas, never each other nor experiments/.
"""
