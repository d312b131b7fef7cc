"""Orchestration: loops that drive several apps through their public services, selectors and runs.

It owns no tables and no app imports it. ``cycle`` is the whole RLHF loop on the sandbox (``manage.py rlhf_cycle``).
"""
