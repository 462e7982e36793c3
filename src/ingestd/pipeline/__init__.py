"""The pipeline's stages and the one thread skeleton they share (docs/ARCHITECTURE.md)."""
