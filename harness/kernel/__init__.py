"""Kernel stages: tree (source) -> series (patches) -> workspace -> config (kconfig) -> build."""
