"""Helpers shared by the test suite: real servers to run against, shared contract tests."""
