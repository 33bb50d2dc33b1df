"""pytest plugin of the harness (registered by the root conftest.py and the pytest11 entry point)."""
