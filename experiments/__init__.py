"""The method studies of stnas (docs/experiments/): research that uses the library and that
the library never imports (tests/test_layers.py holds ``src/`` to that).

Each study is a script, run from the repository root as ``python experiments/NAME.py ...``
(or ``python -m experiments.NAME ...``), and a module, ``experiments.NAME``, that the tests
and the other studies import by its public names. What several studies share lives in
``experiments.common``; nothing else is imported between them but public names.

A script run by its path has its own folder on ``sys.path``, not the repository root, so the
scripts that import ``experiments.*`` begin with the one line that puts the root there first
(``__package__`` is empty only when the file runs as a script):

    if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

The tests find the package through pytest's ``pythonpath`` (pyproject.toml).
"""
