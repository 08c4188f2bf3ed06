"""The application layer: the jobs behind the CLI (train, extract, render, relight, eval, material, vis).

Jobs read and write run folders and datasets; library packages (everything else under ``lumisurf/``
except ``bench`` and ``cli``) never import them (``tests/test_architecture.py``).
"""
