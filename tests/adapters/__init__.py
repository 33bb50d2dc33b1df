"""Tests of harness.adapters."""
