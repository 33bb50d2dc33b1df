"""Environments: the interpreters of this machine (pythons) and the cached venvs built from exact
requirements (venvs), including the package index look-ups (list_versions)."""
