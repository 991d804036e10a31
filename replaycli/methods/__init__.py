"""Replay methods, one file each: a class with one `step(batch, memory)` (base.Method)."""
