"""Search methods, each a ``SearchMethod`` registered by name (``create_search_method``).

Importing the package registers the built-in methods (one module each)."""
from backbones.search import cpnas, darts, dcpnas, direct, random_search  # noqa: F401 (register)
from backbones.search.base import (SearchContext, SearchMethod, create_search_method,
                                   list_search_methods, register_search_method)

__all__ = ["SearchContext", "SearchMethod", "create_search_method", "list_search_methods",
           "register_search_method"]
