"""A secret value in the settings: never shows itself in logs, reprs or tracebacks."""


class Secret(str):
    def __repr__(self) -> str:
        return "Secret(********)"
