"""The shared storage suite, run against every backend."""
