"""Tests of harness.env."""
