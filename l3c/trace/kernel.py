"""Placeholder while this module is being written; its owner replaces it."""
In = Out = InOut = Kernel = kernel = None
