"""Named by the plug-in tests in unregistered paths: nothing may ever import this module."""

CALLS: list[tuple] = []


def touch(*args) -> float:
    CALLS.append(args)
    return 1.0
