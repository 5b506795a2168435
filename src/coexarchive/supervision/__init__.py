"""Supervision review: policies, hits and the review queue, each sealed in its own chain.

- :mod:`coexarchive.supervision.policy`: the policy file format (``schemas/POLICY.md``);
- :mod:`coexarchive.supervision.normalize` and :mod:`~coexarchive.supervision.matcher`: the
  lexicon's normal form and the Aho-Corasick matcher;
- :mod:`coexarchive.supervision.library`: sealed policy versions (chain ``policies``);
- :mod:`coexarchive.supervision.scan`: rescans that seal hits (chain ``reviews``);
- :mod:`coexarchive.supervision.queue`: the review queue, its actions and reports;
- :mod:`coexarchive.supervision.cli`: the ``policy`` and ``review`` commands.
"""
