"""One exception type for user mistakes.

The CLI turns a :class:`UserError` into a single line on stderr and a non-zero exit, so every
message must name the culprit (file, field, option) and say what was expected.
"""


class UserError(Exception):
    """A problem the user can fix (bad config, missing data, corrupt input) — never a bug."""
