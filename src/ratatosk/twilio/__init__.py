"""The WhatsApp-over-Twilio connector: schema, codes, codec, signatures, send policy, service.

Pure: this package never imports aiohttp; the HTTP adapter is plugged in by
``ratatosk.bootstrap`` (or loaded by name when the caller passes none).
"""

from .connector import TwilioWhatsAppConnector
from .errors import PROVIDER_CODE_MAP, TwilioErrorCodes, map_provider_code
from .resilience import RetryPolicy, SendPolicy
from .schema import TwilioChannelSchemas
from .send import Delivery
from .signature import TwilioSignatureValidator, compute_signature
from .twiml import TwiML

__all__ = [
    "PROVIDER_CODE_MAP",
    "Delivery",
    "RetryPolicy",
    "SendPolicy",
    "TwiML",
    "TwilioChannelSchemas",
    "TwilioErrorCodes",
    "TwilioSignatureValidator",
    "TwilioWhatsAppConnector",
    "compute_signature",
    "map_provider_code",
]
