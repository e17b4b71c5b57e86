"""Placeholder while this module is being written; its owner replaces it."""
Compiled = None
