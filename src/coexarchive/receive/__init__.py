"""The webhook receiver: durable landing of Meta's deliveries and of outbound sends.

::

    Meta ──POST /webhook──▶ app ──append──▶ Spool (group-commit fsync) ──▶ 200
    sender ──POST /outbound─┘                  │
                                               ▼
                         Shipper: closed segments → raw/ (create-only, Object Lock) → trim
"""

from coexarchive.receive.app import Receiver, ReceiverConfig, create_app
from coexarchive.receive.capture import OutboundCapture
from coexarchive.receive.shipper import Shipper
from coexarchive.receive.spool import Spool, SpoolError, SpoolFull, SpoolUnavailable

__all__ = [
    "OutboundCapture",
    "Receiver",
    "ReceiverConfig",
    "Shipper",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "SpoolUnavailable",
    "create_app",
]
