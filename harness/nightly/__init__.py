"""Nightly runs: matrix files, the cell runner, compare and the HTML report."""
