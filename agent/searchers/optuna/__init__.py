"""Optuna searchers (``optuna`` and ``nsga2``).

The objective is in :mod:`.search`; study, sampler and storage in :mod:`.study`; the options in :mod:`.options`.
"""
