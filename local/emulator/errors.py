"""The one exception type the emulator turns into a modelled AWS error response."""

from __future__ import annotations


class ApiError(Exception):
    """An error returned to the client; ``code`` is the botocore error shape name (e.g. ``ValidationException``).

    The HTTP status is not stored here: the protocol layer reads it from the service model's error shape.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def validation_error(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def not_found(message: str) -> ApiError:
    return ApiError("ResourceNotFoundException", message)


def conflict(message: str) -> ApiError:
    return ApiError("ConflictException", message)
