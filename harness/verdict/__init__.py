"""The verdict: Observation -> (failure class, signature, reason) through one decision table (classify), the
signature normalization (signature) and the keep-alive `degraded` comparison of twin records (degraded)."""
