"""The one exception type the commands turn into a one-line message."""


class FcamError(Exception):
    """An error the user can act on: it names the file, key or value at fault.

    Library code raises it for what a user can fix: a missing or unreadable file, malformed
    metadata, an unknown config key, a value outside its range. A broken internal contract (a
    tensor of the wrong shape passed between fcam's own functions) is a ``ValueError`` or
    ``TypeError`` instead, as is any other bug.

    Commands catch it, print ``error: <message>`` on stderr and exit with status 2, without a
    traceback; any other exception ends the command with its full traceback. With the
    environment variable ``FCAM_DEBUG=1`` the commands print the traceback of an FcamError too.
    """
