"""Bundled handlers."""
