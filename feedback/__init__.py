"""Campaigns, comparison pairs, assignments, votes, annotator quality, dataset export/import (issue: feedback)."""
