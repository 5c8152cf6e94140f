"""Optuna searchers (``optuna`` and ``nsga2``): the objective in :mod:`.search`, the study in :mod:`.study`."""
