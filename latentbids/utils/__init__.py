"""Small helpers used across the package (atomic writes, logging)."""
