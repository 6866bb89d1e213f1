"""Model and reference loading, log-prob computation, reference cache."""
