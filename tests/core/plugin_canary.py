"""A module the plug-in tests register by name; importing it is what must not happen for unregistered names."""

VALUE = 3


def score(prompt, image) -> float:
    return 0.25
