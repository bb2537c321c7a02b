"""The kernel suite: the pytest plugin, `pte-harness run` and `pte-harness bisect`."""
