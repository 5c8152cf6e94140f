"""After the search: fine-tune, iterative and unstructured pruning, cleanup, export and saved artifacts.

Each module is imported on its own; the public names are on :mod:`agent`.
"""
