"""The search stage: a session evaluating candidates for a searcher, the result log, and the whole run.

:mod:`.session` is what a searcher talks to, :mod:`.results` the ``results.csv`` log and :mod:`.run` the run
(``run_search``: precheck -> search -> confirm -> fine-tune -> write), with its :mod:`.advice`,
:mod:`.feasibility` checks and :mod:`.policy_file` output. Nothing is imported here, so a searcher can import
:mod:`.session` without loading :mod:`.run` (which imports the searcher registry); the public names are on
:mod:`agent`.
"""
