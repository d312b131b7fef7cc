"""Campaigns, comparison pairs, assignments, votes, annotator quality, dataset export/import (issue: feedback).

A campaign asks 1-4 named questions (criteria) per pair; how votes store them and why: ``feedback.criteria``.
"""
