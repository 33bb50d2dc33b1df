"""Tests of harness.campaign."""
