"""Search methods, each a ``SearchMethod`` registered by name (``create_search_method``); the
built-in methods (one module each) register on the registry's first lookup."""
from backbones.search.base import (SearchContext, SearchMethod, create_search_method,
                                   list_search_methods, register_search_method)

__all__ = ["SearchContext", "SearchMethod", "create_search_method", "list_search_methods",
           "register_search_method"]
