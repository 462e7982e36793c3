"""The post-action stage: archive, delete, keep or quarantine the source of a file once it
reached a terminal state, on its own worker. worker (the loop: what is due, batches, retries),
plan (one row's post-action, pure), perform (carrying out a batch, intent before effect),
files (the local file operations). See docs/ARCHITECTURE.md."""

from ingestd.pipeline.post.worker import PostWorker

__all__ = ["PostWorker"]
