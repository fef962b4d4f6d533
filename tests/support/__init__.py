"""Test support code shared by the test suite (real dockerd, helpers)."""
