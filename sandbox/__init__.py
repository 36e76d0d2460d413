"""A local, strict emulation of the Microsoft services Copilot Setup Bot talks to: Entra ID's token
endpoint, Microsoft Graph (applications) and the Dataverse Web API (Copilot Studio agents). See README.md."""

from .app import Sandbox, SandboxOptions
from .faults import FaultSettings

__all__ = ["Sandbox", "SandboxOptions", "FaultSettings"]
