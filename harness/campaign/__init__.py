"""Campaigns: many runs. matrix (the scenario matrix, resumable, one process per cell), release (a release
against its predecessor), bisection (first bad / first fixed release), catalog_runs (the known-issue
catalog), config (matrix files). They return records and results; they never print or render."""
