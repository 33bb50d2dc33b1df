"""Tests of harness.verdict."""
