"""Step 11: the outside anchors a bundle carries, checked offline (``export.anchors``).

1. ``anchors/head.note`` is an archive head signed by a trusted key, for the bundle's archive;
   each chain of the bundle that the head states at the same size has the same root there (a
   chain the head states at another size is not covered: a warning says so).
2. With TSA roots (``--tsa-file``): every ``anchors/timestamps/<tsa>.tsr`` verifies against that
   authority's roots and is over exactly the head's note text; the report states the time each
   proves. Without roots, tokens are reported as not checked, never as proof.
3. With a witness policy (``--witnesses``): every ``anchors/cosignatures/*.note`` is the heads-log
   checkpoint signed by a trusted key, its cosignature verifies, the head's leaf is included at
   the stated index (``anchors/heads-inclusion.json``) in that checkpoint's root, and at least
   the policy's quorum of witnesses cosigned it. A bundle cannot show a rollback of heads newer
   than its own: that needs the witnesses asked online (``coexarchive verify --witnesses``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from coexarchive.anchor.tsa import Tsa, check_token
from coexarchive.anchor.witness import WitnessPolicy, heads_origin
from coexarchive.errors import CoexArchiveError, Failure
from coexarchive.export.verify_bundle.report import BundleReport
from coexarchive.seal.checkpoint import open_checkpoint
from coexarchive.seal.cosignature import cosignatures_of
from coexarchive.seal.head import open_head
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.merkle import leaf_hash, verify_inclusion

__all__ = ["anchors_step"]

STEP = "anchors"


def anchors_step(
    files: Mapping[str, bytes],
    description: Mapping[str, Any],
    trust: TrustStore,
    report: BundleReport,
    *,
    tsas: Sequence[Tsa] = (),
    witnesses: WitnessPolicy | None = None,
) -> None:
    def fail(message: str, path: str | None = None) -> None:
        report.failures.append(Failure(STEP, message, None, path))

    anchors = description.get("anchors")
    if not isinstance(anchors, dict):
        if tsas or witnesses is not None:
            fail("the bundle carries no outside anchors, but timestamps or witnesses were asked")
        return
    archive = str(description.get("archive"))
    # 1. the anchored head
    try:
        head, _ = open_head(files["anchors/head.note"], trust, archive_name=archive)
    except (KeyError, CoexArchiveError) as exc:
        fail(f"anchored archive head does not verify: {exc}", "anchors/head.note")
        return
    stated = {chain.chain_id: chain for chain in head.chains}
    for chain in description.get("chains", []):
        at = stated.get(chain.get("chain_id"))
        if at is None or at.size != chain.get("tree_size"):
            report.warnings.append(
                f"chain {chain.get('chain_id')}: the anchored head {head.seq} states it at "
                f"{at.size if at else 'no'} records, the bundle proves {chain.get('tree_size')}: "
                "the anchors do not cover this chain's checkpoint"
            )
        elif base64.b64encode(at.root_hash).decode() != chain.get("root_hash"):
            fail(
                f"chain {chain.get('chain_id')}: the anchored head {head.seq} states another "
                "root at the bundle's size (fork)",
                "anchors/head.note",
            )
    report.anchors = {"head": head.seq, "timestamps": {}, "witnesses": []}
    # 2. timestamps
    roots = {tsa.name: tsa for tsa in tsas}
    for name in anchors.get("timestamps", []):
        path = f"anchors/timestamps/{name}.tsr"
        tsa = roots.get(name)
        if tsa is None:
            report.warnings.append(f"timestamp {path} not checked: no roots for {name} given")
            continue
        try:
            checked = check_token(files[path], head.body(), tsa.roots, name=name)
        except (KeyError, CoexArchiveError) as exc:
            fail(f"timestamp of archive head {head.seq}: {exc}", path)
            continue
        report.anchors["timestamps"][name] = checked.gen_time.isoformat()
    for tsa in tsas:
        if tsa.name not in anchors.get("timestamps", []):
            fail(f"no timestamp from {tsa.name} in the bundle")
    # 3. cosignatures
    if witnesses is None:
        if anchors.get("cosignatures"):
            report.warnings.append("cosignatures not checked: no witness policy given")
        return
    try:
        inclusion = orjson.loads(files["anchors/heads-inclusion.json"])
        proof = [base64.b64decode(h, validate=True) for h in inclusion["proof"]]
        index, size = int(inclusion["index"]), int(inclusion["size"])
    except (KeyError, ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        fail("anchors/heads-inclusion.json is missing or malformed", "anchors/heads-inclusion.json")
        return
    keys = witnesses.keys()
    cosigners: set[str] = set()
    for key_id in anchors.get("cosignatures", []):
        path = f"anchors/cosignatures/{key_id}.note"
        try:
            note = files[path]
            checkpoint = open_checkpoint(note, trust, origin=heads_origin(archive))
            _, found = cosignatures_of(note, keys)
            if index != head.seq or checkpoint.size != size:
                raise CoexArchiveError("the inclusion proof is for another head or size")
            verify_inclusion(leaf_hash(head.body()), index, size, proof, checkpoint.root_hash)
        except (KeyError, CoexArchiveError) as exc:
            fail(f"cosigned heads checkpoint does not verify: {exc}", path)
            continue
        cosigners.update(c.name for c in found)
    report.anchors["witnesses"] = sorted(cosigners)
    if len(cosigners) < witnesses.quorum:
        fail(
            f"archive head {head.seq} is cosigned by {len(cosigners)} of the policy's witnesses; "
            f"the policy asks for {witnesses.quorum}"
        )
