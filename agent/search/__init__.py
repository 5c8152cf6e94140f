"""The search stage: a :mod:`.session` evaluating candidates for a searcher, the :mod:`.results` log, and
:mod:`.run` (``run_search``: precheck -> search -> confirm -> fine-tune -> write), with its :mod:`.advice`,
:mod:`.feasibility` checks and :mod:`.policy_file` output.

Nothing is imported here, so a searcher can import :mod:`.session` without loading :mod:`.run` (which imports
the searcher registry); the public names are on :mod:`agent`.
"""
