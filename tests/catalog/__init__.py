"""Tests of harness.catalog."""
