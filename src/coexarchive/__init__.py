"""coexarchive: a compliance archive for WhatsApp Business Coexistence.

Public nouns: :mod:`coexarchive.records`, :mod:`coexarchive.seal`, :mod:`coexarchive.store`,
:mod:`coexarchive.segments`, :mod:`coexarchive.verify`, :mod:`coexarchive.webhooks`.
"""

__version__ = "0.1.0"
