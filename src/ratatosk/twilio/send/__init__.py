"""Sending, as a pipeline of small stages (connector layer); see :mod:`.pipeline`."""

from .guard import WindowGuard
from .pipeline import SendPipeline, api_failure, create_stages
from .recheck import Delivery, lease_for
from .retry import RetryHook
from .stage import CreateStage, OutcomeUnknown, SendTrace
from .templates import TemplateResolver

__all__ = [
    "CreateStage",
    "Delivery",
    "OutcomeUnknown",
    "RetryHook",
    "SendPipeline",
    "SendTrace",
    "TemplateResolver",
    "WindowGuard",
    "api_failure",
    "create_stages",
    "lease_for",
]
