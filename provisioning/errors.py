"""The provisioning service's one exception tree.

Every error carries what an administrator needs to act: which step, what Microsoft said,
the request id to quote to Microsoft support, and a sentence saying what to do next.
Secret values never appear in any attribute or message.

    ProvisioningError
    ├── ConfigurationError        missing or contradictory configuration (names the variable)
    ├── ValidationFailed          the request is invalid; .field_errors lists each field's message
    ├── PreflightFailed           the provisioning identity lacks a permission; .report says which
    ├── StalePlanError            the tenant changed since the plan was approved
    ├── JobStateError             the action does not fit the job's current state (e.g. confirm a done step)
    ├── NotAuthorizedError        the actor may not do this (front ends map it to a refusal)
    ├── SecretUnavailableError    the one-time secret was already retrieved, expired or never made
    ├── ForeignObjectError        an app registration this setup would change was not made by this bot's identity
    ├── JobCancelled              the job was cancelled (or its lease taken over): the run stops, nothing more is written
    └── MicrosoftApiError         Microsoft answered with an error (status, code, message, request_id)
        ├── AuthenticationError   401 / token endpoint refused (AADSTS…)
        ├── PermissionDeniedError 403 (Authorization_RequestDenied, Dataverse privilege errors)
        ├── NotFoundError         404 (Request_ResourceNotFound, Dataverse 0x80040217)
        ├── ThrottledError        429 / service-protection limits (carries retry_after)
        ├── ServiceUnavailableError 5xx / 408 after retries ran out
        └── BadRequestError       400 Microsoft rejected the body or query
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = [
    "ProvisioningError",
    "ConfigurationError",
    "FieldError",
    "ValidationFailed",
    "PreflightFailed",
    "StalePlanError",
    "JobStateError",
    "NotAuthorizedError",
    "SecretUnavailableError",
    "ForeignObjectError",
    "JobCancelled",
    "MicrosoftApiError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ThrottledError",
    "ServiceUnavailableError",
    "BadRequestError",
]


class ProvisioningError(Exception):
    """Base of every error this package raises.

    Attributes:
        message: what went wrong, in plain words.
        action: what the administrator should do next.
        step: the setup step it happened in, or None.
    """

    def __init__(self, message: str, *, action: str = "", step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.action = action
        self.step = step

    def user_message(self) -> str:
        """One or two sentences fit for a chat message or a CLI line."""
        parts = [self.message]
        if self.action:
            parts.append(self.action)
        return " ".join(parts)


class ConfigurationError(ProvisioningError):
    """Configuration is missing or contradictory. `variable` names the environment variable."""

    def __init__(self, variable: str, message: str, *, action: str = "") -> None:
        super().__init__(message, action=action)
        self.variable = variable


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request: `field` is the request attribute name."""

    field: str
    message: str


class ValidationFailed(ProvisioningError):
    def __init__(self, field_errors: Sequence[FieldError]) -> None:
        self.field_errors = list(field_errors)
        summary = "; ".join(f"{e.field}: {e.message}" for e in self.field_errors)
        super().__init__(f"The setup request is not valid: {summary}", action="Correct the fields and try again.")

    def by_field(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in self.field_errors:
            out.setdefault(e.field, e.message)
        return out


class PreflightFailed(ProvisioningError):
    def __init__(self, report: Any) -> None:
        self.report = report
        missing = [c for c in report.checks if not c.ok]
        text = "; ".join(c.message for c in missing) or "a preflight check failed"
        super().__init__(
            f"The provisioning identity cannot do every step: {text}",
            action=" ".join(c.remedy for c in missing if c.remedy),
        )


class StalePlanError(ProvisioningError):
    def __init__(self, approved_hash: str, current_hash: str) -> None:
        self.approved_hash = approved_hash
        self.current_hash = current_hash
        super().__init__(
            "The tenant changed after this plan was made, so it was not applied.",
            action="Review the new plan and approve it again.",
        )


class JobStateError(ProvisioningError):
    pass


class NotAuthorizedError(ProvisioningError):
    pass


class SecretUnavailableError(ProvisioningError):
    pass


class ForeignObjectError(ProvisioningError):
    pass


class JobCancelled(ProvisioningError):
    """Raised inside a job's run when its lease is gone or it was cancelled: the worker stops quietly."""


class MicrosoftApiError(ProvisioningError):
    """Microsoft answered with an error.

    Attributes:
        status: HTTP status code (0 when no response arrived).
        code: Microsoft's error code (`Request_ResourceNotFound`, `0x80040217`, `invalid_client`, …).
        ms_message: Microsoft's own message, verbatim (never contains our secret values).
        request_id: the `request-id` / `x-ms-service-request-id` to quote to Microsoft support.
        service: "graph", "dataverse" or "entra".
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "",
        ms_message: str = "",
        request_id: str = "",
        service: str = "",
        action: str = "",
        step: str | None = None,
    ) -> None:
        super().__init__(message, action=action, step=step)
        self.status = status
        self.code = code
        self.ms_message = ms_message
        self.request_id = request_id
        self.service = service

    def user_message(self) -> str:
        parts = [self.message]
        if self.ms_message and self.ms_message not in self.message:
            parts.append(f"Microsoft said: {self.code + ': ' if self.code else ''}{self.ms_message}")
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        if self.action:
            parts.append(self.action)
        return " ".join(parts)


class AuthenticationError(MicrosoftApiError):
    pass


class PermissionDeniedError(MicrosoftApiError):
    pass


class NotFoundError(MicrosoftApiError):
    pass


class ThrottledError(MicrosoftApiError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServiceUnavailableError(MicrosoftApiError):
    pass


class BadRequestError(MicrosoftApiError):
    pass

