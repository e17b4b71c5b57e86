"""Placeholder while this module is being written; its owner replaces it."""
empty = empty_like = group = scope = zeros = None
