"""The one exception type the commands turn into a one-line message."""


class FcamError(Exception):
    """An error the user can act on: it names the file, key or value at fault.

    Commands catch it, print ``error: <message>`` on stderr and exit with status 2,
    without a traceback. Library code raises it for bad input (missing files,
    malformed metadata, invalid config values), never for programming errors.
    """
