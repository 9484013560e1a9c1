"""The one exception type that frgb raises for problems a user can fix."""


class FrgbError(Exception):
    """A problem with the user's input or environment; its message is one line that says what."""
