class ServiceError(Exception):
    """A refused operation, with a stable code for APIs and a sentence for people.

    Services raise it before changing anything; views turn it into a message or a form error,
    the API into a JSON error with the same code.
    """

    status = 400

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        if status:
            self.status = status

    def as_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["fields"] = {self.field: [self.message]}
        return body
