"""Reward models: architecture, loss, training loop, evaluation, scoring (issue: rewards)."""
