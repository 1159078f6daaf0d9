"""Executable checks of the theorems stated and proved in ``proofs/*.md``.

Each ``test_*.py`` pairs with one Markdown proof (see ``proofs/README.md``); the helpers here use
only polynet's public names, so the checks double as API checks.
"""
