"""Evaluation: metrics, suites, bias analysis and reports."""
