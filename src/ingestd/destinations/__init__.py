"""Where files go: one module per kind of outside system."""
