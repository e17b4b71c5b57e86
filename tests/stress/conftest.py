"""Stress-suite settings: how many random programs (L3C_STRESS_PROGRAMS) from which seed
(L3C_STRESS_SEED), and a one-line summary of what was tried at the end of the session."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stress_programs  # noqa: E402


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if stress_programs.STATS.programs:
        terminalreporter.write_line(stress_programs.STATS.line())
