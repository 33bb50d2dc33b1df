"""Tests of harness.capsule."""
