"""Policy files: the published schema, clear errors with the path of the bad member, and sealed,
immutable versions in the ``policies`` chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from coexarchive.errors import ConfigError, FormatError
from coexarchive.store import MemoryStore
from coexarchive.supervision.library import import_policy, resolve_policy, sealed_policies
from coexarchive.supervision.policy import load_policy, parse_policy, policy_schema
from coexarchive.supervision.register import POLICIES_CHAIN, Sealer, read_chain
from support.archive import ARCHIVE, signer, trust_for

SCHEMAS = Path(__file__).parents[2] / "schemas"
SAMPLE = SCHEMAS / "samples" / "policy-sample.yaml"
NOW = 1_767_900_000_000


def sealer(store: MemoryStore) -> Sealer:
    key = signer(seed=b"audit")
    return Sealer(store, signer=key, archive_name=ARCHIVE, trust=trust_for(key))


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    base.update(changes)
    return base


def test_published_schema_is_the_models_schema() -> None:
    # Regenerate: python -c "import json; from coexarchive.supervision.policy import policy_schema;
    #   print(json.dumps(policy_schema(), indent=2, sort_keys=True, ensure_ascii=False))"
    published = json.loads((SCHEMAS / "policy.schema.json").read_text())
    assert published == json.loads(json.dumps(policy_schema()))


def test_sample_follows_the_published_schema_and_loads() -> None:
    schema = json.loads((SCHEMAS / "policy.schema.json").read_text())
    jsonschema.validate(document(), schema)
    policy = load_policy(SAMPLE)
    assert policy.label == "conduct-sample@1"
    languages = {getattr(rule, "language", None) for rule in policy.rules}
    assert {"en", "pt", "ar", "hi"} <= languages


def test_json_and_yaml_give_the_same_policy(tmp_path: Path) -> None:
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps(document()))
    assert load_policy(as_json).sha256() == load_policy(SAMPLE).sha256()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"format": "coexarchive.policy/v9"}, "$.format"),
        ({"version": 0}, "$.version"),
        ({"name": "Has Spaces"}, "$.name"),
        ({"rules": []}, "$.rules"),
        ({"colour": "red"}, "$.colour: Extra inputs are not permitted"),
    ],
)
def test_bad_top_level_members_are_named(change: dict[str, Any], path: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_policy(document(**change), source="p.yaml")
    assert path in str(caught.value) and str(caught.value).startswith("p.yaml: ")


@pytest.mark.parametrize(
    ("index", "member", "value", "expected"),
    [
        (0, "terms", ["ok", "mid*dle"], "$.rules[0].terms: term 'mid*dle'"),
        (0, "trems", ["x"], "$.rules[0].trems: Extra inputs are not permitted"),
        (0, "near", {"terms": ["x"], "within": 0}, "$.rules[0].near.within"),
        (0, "terms", ["—!"], "no letters or digits"),
        (4, "stem", True, "no Snowball stemmer for language 'xx'"),
        (5, "flags", ["made_up"], "$.rules[5].flags: unknown flag(s) made_up"),
        (6, "rate", 1.5, "$.rules[6].rate"),
        (6, "chains", {"bad chain!": 0.1}, "$.rules[6].chains"),
    ],
)
def test_bad_rule_members_are_named(index: int, member: str, value: Any, expected: str) -> None:
    data = document()
    if index == 4 and member == "stem":
        data["rules"][4]["language"] = "xx"
    data["rules"][index][member] = value
    with pytest.raises(FormatError, match="not a valid policy") as caught:
        parse_policy(data)
    assert expected in str(caught.value)


def test_rule_ids_are_unique() -> None:
    data = document()
    data["rules"][1]["id"] = data["rules"][0]["id"]
    with pytest.raises(FormatError, match="rule id 'complaints-en' is used twice"):
        parse_policy(data)


def test_yaml_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SAMPLE.read_text().replace("version: 1\n", "version: 1\nversion: 2\n"))
    with pytest.raises(FormatError, match="key 'version' appears twice"):
        load_policy(path)


def test_unreadable_files_fail_in_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "p.json"
    bad.write_text("{nope")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_policy(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(FormatError, match="not UTF-8"):
        load_policy(bad)


def test_import_seals_each_version_once() -> None:
    store = MemoryStore()
    policy = load_policy(SAMPLE)
    first = import_policy(sealer(store), policy, who="cco@firm", now_ms=NOW)
    again = import_policy(sealer(store), policy, who="someone", now_ms=NOW + 1)
    assert first.created and not again.created
    assert again.policy.seq == first.policy.seq == 0 and again.policy.who == "cco@firm"
    rows = read_chain(store, POLICIES_CHAIN)
    assert [(r.kind, r.detail["name"], r.detail["version"]) for r in rows] == [
        ("policy", "conduct-sample", 1)
    ]
    assert rows[0].detail["sha256"] == policy.sha256()


def test_a_sealed_version_never_changes() -> None:
    store = MemoryStore()
    import_policy(sealer(store), load_policy(SAMPLE), who="a", now_ms=NOW)
    changed = parse_policy(document(description="edited"))
    with pytest.raises(ConfigError, match=r"already sealed .* raise `version` to 2"):
        import_policy(sealer(store), changed, who="a", now_ms=NOW)
    second = parse_policy(document(description="edited", version=2))
    assert import_policy(sealer(store), second, who="a", now_ms=NOW).created
    assert [s.policy.label for s in sealed_policies(store)] == [
        "conduct-sample@1",
        "conduct-sample@2",
    ]
    assert resolve_policy(store, "conduct-sample").policy.version == 2
    assert resolve_policy(store, "conduct-sample@1").policy.description != "edited"
    with pytest.raises(ConfigError, match="no sealed policy 'conduct-sample@3'"):
        resolve_policy(store, "conduct-sample@3")
    with pytest.raises(ConfigError, match="expected NAME or NAME@VERSION"):
        resolve_policy(store, "Bad Name")
