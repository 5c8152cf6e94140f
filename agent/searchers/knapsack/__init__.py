"""The knapsack searcher (``knapsack``): the solver and searcher in :mod:`.search`, options in :mod:`.options`."""
