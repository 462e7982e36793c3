"""The operators' dashboard: server-rendered HTML views over the catalog, one module per view
(docs/ARCHITECTURE.md, "The dashboard"). Every value from outside passes ``html.esc``."""
