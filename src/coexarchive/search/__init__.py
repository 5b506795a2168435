"""Full-text search over the archive: a query language, a local index, sealed searches.

The index (:class:`SearchIndex`) is derived data, rebuilt from the archive at any time; a search
(:class:`Searcher`) reads every hit back from the archive, checks it against the query, seals the
search in the access log and only then returns the result. ``docs/search.md`` explains the
language, the index and the choice of tantivy.
"""

from coexarchive.search.index import SearchIndex, SearchIndexError, default_index_dir
from coexarchive.search.language import SearchSyntaxError, parse
from coexarchive.search.service import Searcher, SearchResult

__all__ = [
    "SearchIndex",
    "SearchIndexError",
    "SearchResult",
    "SearchSyntaxError",
    "Searcher",
    "default_index_dir",
    "parse",
]
