"""Reports of a search's output directory: ``report.md`` + ``report.html`` with PNG figures."""

from ..searchers.pareto import pareto_mask
from .build import PLOT_DIR, SECTIONS, ReportOutcome, build_report
from .inputs import ReportInputs, find_sensitivity_profile, load_report_inputs

__all__ = ["PLOT_DIR", "SECTIONS", "ReportInputs", "ReportOutcome", "build_report", "find_sensitivity_profile",
           "load_report_inputs", "pareto_mask"]
