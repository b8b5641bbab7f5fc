"""Benchmarks, each a module run from the repository root as ``python -m bench.<name>``
(``make bench`` runs the main ones); shared helpers live in ``bench.common``, the only
``bench`` module the others import. Results go to ``bench/results/``."""
