"""Benchmarks that print figures (a table + JSON), never timed asserts. See bench/README.md."""
