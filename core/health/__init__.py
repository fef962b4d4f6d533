"""Host health: metrics sampling, deterministic checks, incidents, and the daily analysis.

Import the submodules you need; this package imports nothing heavy on its own (the
migrations import `core.health.models`, and matplotlib loads only with the analysis).
"""
