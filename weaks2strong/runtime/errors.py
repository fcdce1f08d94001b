"""The one error type users see: bad input, reported as a single line naming the culprit."""


class UserInputError(ValueError):
    """Bad data, a bad config value or a bad model/teacher output. ``w2s`` prints it as one line."""
