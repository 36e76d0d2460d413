"""The provisioning service: plan, approve and apply the Copilot Studio authentication setup.

Front ends (the Teams bot, `python -m provisioning`) use `ProvisioningService`; see docs/ARCHITECTURE.md.
"""

from .config import Settings
from .errors import (
    ConfigurationError,
    FieldError,
    JobStateError,
    MicrosoftApiError,
    NotAuthorizedError,
    PreflightFailed,
    ProvisioningError,
    SecretUnavailableError,
    StalePlanError,
    ValidationFailed,
)
from .models import (
    Actor,
    AgentRef,
    AgentSummary,
    Event,
    EventKind,
    JobStatus,
    JobView,
    Plan,
    SetupRequest,
    StepAction,
    StepName,
    StepStatus,
)
from .service import ProvisioningService

__all__ = [
    "Settings", "ProvisioningService",
    "Actor", "AgentRef", "AgentSummary", "Event", "EventKind", "JobStatus", "JobView", "Plan", "SetupRequest",
    "StepAction", "StepName", "StepStatus",
    "ProvisioningError", "ConfigurationError", "FieldError", "ValidationFailed", "PreflightFailed", "StalePlanError",
    "JobStateError", "NotAuthorizedError", "SecretUnavailableError", "MicrosoftApiError",
]
