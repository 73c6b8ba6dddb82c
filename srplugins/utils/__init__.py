"""Helpers shared by scripts and models (no registered classes here)."""
