"""Test and demo tooling: deterministic WhatsApp Coexistence traffic, landed in the raw format.

Nothing here runs in production: the receiver, the ingest job and the archive never import it.
Its deliveries are signed with :data:`DEMO_APP_SECRET`, a published, test-only app secret, unless a
configuration names another; no production command accepts it as a default.

``simulate(config)`` plays one business number with its customers over a few days: inbound messages
of every catalogued type, Cloud API sends (outbound capture) and their statuses, app echoes with
edits and revokes, the onboarding history import, contact sync, template lifecycle, opt-outs,
account events; with Meta's quirks (duplicates, reordering, batching, BSUID-only users, string vs
int timestamps, malformed bodies). It returns the raw objects and the list of distinct events the
archive must end up holding, so an ingest test can check completeness exactly.

Same config, same bytes: all randomness comes from ``random.Random(config.seed)`` and the clock is
``config.start``. Modules: :mod:`.model` (configuration and results), :mod:`.content` (people and
words), :mod:`.live` and :mod:`.simulator` (the storyline), :mod:`.landing` (deliveries, quirks,
raw objects), :mod:`.bulk` (benchmark input), :mod:`.cli` (``python -m coexarchive.testing``).
"""

from coexarchive.testing.bulk import bulk_objects
from coexarchive.testing.landing import redelivery, simulate
from coexarchive.testing.model import (
    DEFAULT_START,
    DEMO_APP_SECRET,
    ExpectedEvent,
    Simulation,
    SimulationConfig,
)

__all__ = [
    "DEFAULT_START",
    "DEMO_APP_SECRET",
    "ExpectedEvent",
    "Simulation",
    "SimulationConfig",
    "bulk_objects",
    "redelivery",
    "simulate",
]
