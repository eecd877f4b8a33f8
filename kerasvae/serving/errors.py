"""The one error both clients raise."""


class ServingError(RuntimeError):
    """An error reported by TensorFlow Serving (or the way to it).

    Attributes:
        message: str. The server's own message (REST `{"error": ...}` body or
            gRPC status details), or what went wrong reaching the server.
        status_code: int or None. The HTTP status (REST client only).
        code: str or None. The gRPC status code name, e.g.
            `"INVALID_ARGUMENT"` (gRPC client only).
    """

    def __init__(self, message, status_code=None, code=None):
        self.message = message
        self.status_code = status_code
        self.code = code
        where = []
        if status_code is not None:
            where.append(f"HTTP {status_code}")
        if code is not None:
            where.append(f"gRPC {code}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
