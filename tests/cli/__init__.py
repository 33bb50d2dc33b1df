"""Tests of harness.cli and harness.plugin."""
