"""Optuna searchers (``optuna`` and ``nsga2``): the objective in :mod:`.search`, study, sampler and storage in
:mod:`.study`."""
