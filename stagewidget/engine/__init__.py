"""The engine: runs, executors, progress handles and observer delivery."""
