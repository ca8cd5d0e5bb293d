"""The one error of the course commands: a message in the user's terms, printed without a traceback."""


class CourseError(Exception):
    """The course cannot be brought up or down; the message says why and what to do."""
