"""User-facing errors: the CLI prints their message alone, never a traceback."""


class LumisurfError(Exception):
    """Base class of errors caused by user input (bad data, bad config, bad run folder)."""


class DataError(LumisurfError):
    """A dataset file or field is missing, unreadable or inconsistent; the message names it."""


class ConfigError(LumisurfError):
    """A config key or value is unknown or invalid."""


class DataWarning(UserWarning):
    """A dataset is usable but not as the user probably meant (e.g. masks dropped); the message names the file."""
