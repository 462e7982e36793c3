"""ingestd: take every file dropped in an inbox exactly once, validated and de-duplicated."""

__version__ = "0.1.0"
