"""The setup steps, in the order a job runs them. Adding a step means adding one module and one line here."""

from __future__ import annotations

from .app_registration import AppRegistration
from .base import Step, StepContext, Verification, unique_name
from .client_secret import ClientSecret
from .copilot_authentication import CopilotAuthentication
from .customer_service_connection import CustomerServiceConnection
from .federated_credential import FederatedCredential
from .publish import Publish
from .secured_access import SecuredAccess
from .service_principal import ServicePrincipal

STEPS: tuple[Step, ...] = (
    AppRegistration(),
    ClientSecret(),
    FederatedCredential(),
    ServicePrincipal(),
    CopilotAuthentication(),
    Publish(),
    SecuredAccess(),
    CustomerServiceConnection(),
)

__all__ = ["STEPS", "Step", "StepContext", "Verification", "unique_name"]
