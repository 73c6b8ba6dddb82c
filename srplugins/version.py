"""The srplugins version: a static string (setup.py reads it with a regular expression)."""
__version__ = '0.1.0'
