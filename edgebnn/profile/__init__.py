"""Latency profiling on this host and on boards over SSH (filled in below)."""
