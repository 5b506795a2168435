"""Compliance enrichment: consent ledger, template registry, 24-hour window, flags.

Rules, as-of fields and keyword lists: ``schemas/ENRICHMENT.md``.
"""

from coexarchive.enrich.chain import collect_side_events, enrich_chain, enrich_for_seal
from coexarchive.enrich.consent import ConsentLedger, KeywordConfig
from coexarchive.enrich.context import ChainContext, load_context
from coexarchive.enrich.flags import ALL_FLAGS, EnrichConfig
from coexarchive.enrich.reassess import current_flags, reassess
from coexarchive.enrich.templates import TemplateRegistry

__all__ = [
    "ALL_FLAGS",
    "ChainContext",
    "ConsentLedger",
    "EnrichConfig",
    "KeywordConfig",
    "TemplateRegistry",
    "collect_side_events",
    "current_flags",
    "enrich_chain",
    "enrich_for_seal",
    "load_context",
    "reassess",
]
