"""The setup steps, in the order a job runs them. Adding a step means adding one module and one line here."""

from __future__ import annotations

from ..models import REMOVE, SetupRequest, StepName
from .app_registration import AppRegistration
from .base import Step, StepContext, Verification, unique_name
from .client_secret import ClientSecret
from .copilot_authentication import CopilotAuthentication
from .customer_service_connection import CustomerServiceConnection
from .federated_credential import FederatedCredential
from .publish import Publish
from .removal import AgentAuthenticationOff, CustomerServiceDisconnect, DeleteAppRegistration
from .retire_credential import RetireCredential
from .secured_access import SecuredAccess
from .service_principal import ServicePrincipal

STEPS: tuple[Step, ...] = (
    AppRegistration(),
    ClientSecret(),
    FederatedCredential(),
    ServicePrincipal(),
    CopilotAuthentication(),
    Publish(),
    RetireCredential(),
    SecuredAccess(),
    CustomerServiceConnection(),
)
REMOVAL_STEPS: tuple[Step, ...] = (AgentAuthenticationOff(), CustomerServiceDisconnect(), DeleteAppRegistration())
STEP_BY_NAME: dict[str, Step] = {s.name.value: s for s in (*STEPS, *REMOVAL_STEPS)}


def steps_for(request: SetupRequest) -> tuple[Step, ...]:
    """The steps a job of this request runs, in order: a setup (also a rotation or a repair), or a removal."""
    if request.purpose == REMOVE:
        return REMOVAL_STEPS
    return STEPS if request.retire else tuple(s for s in STEPS if s.name != StepName.RETIRE_CREDENTIAL)  # nothing retired: not listed

__all__ = ["STEPS", "REMOVAL_STEPS", "STEP_BY_NAME", "steps_for", "Step", "StepContext", "Verification", "unique_name"]
