"""Errors of the handler runtime and how each maps to an HTTP status."""

from __future__ import annotations


class BadRequest(Exception):
    """The request (or event) is malformed: answered 400 with this message.

    User code may raise it too (`from aifunction_operator.handler import BadRequest`) to
    reject an event it cannot use; any other exception from user code is a 500.
    """

    status = 400


class ModelInputError(BadRequest):
    """Triton rejected the inputs the handler built from the event (wrong name, shape, datatype)."""


class ModelUnavailable(Exception):
    """Triton could not be reached or its model is not ready: answered 503."""

    status = 503


class HandlerLoadError(Exception):
    """The user's code could not be imported or its entrypoint is not usable."""
