"""Policy searchers behind one interface (:class:`Searcher`), registered by name."""

from .base import SEARCHERS, Searcher, get_searcher, searcher_names

__all__ = ["SEARCHERS", "Searcher", "get_searcher", "searcher_names"]
