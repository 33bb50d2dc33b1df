"""Tests of servers (the reference server, its strategies and apps)."""
