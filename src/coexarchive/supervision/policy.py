"""Supervision policies: what a reviewer must look at, as a versioned file (``schemas/POLICY.md``).

A policy is parsed at the boundary into frozen models and refused, with the path of the bad
member, when it does not follow ``schemas/policy.schema.json`` (generated from these models; a
test keeps them equal).
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coexarchive.enrich.flags import ALL_FLAGS
from coexarchive.errors import ConfigError, FormatError
from coexarchive.supervision.normalize import STEM_LANGUAGES, normalize

__all__ = [
    "POLICY_FORMAT",
    "FlagRule",
    "LexiconRule",
    "Near",
    "Policy",
    "SampleRule",
    "load_policy",
    "parse_policy",
    "policy_schema",
]

POLICY_FORMAT: Final = "coexarchive.policy/v1"
MAX_POLICY_BYTES: Final = 4 << 20
_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_LANGUAGE = r"^[a-z]{2,3}$"
_CHAIN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_SPEC = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]{0,63})(?:@(?P<version>[1-9][0-9]{0,8}))?$")

Name = Annotated[str, Field(pattern=_NAME)]
Term = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_terms(terms: list[str]) -> list[str]:
    for term in terms:
        body = term[:-1] if term.endswith("*") else term
        if "*" in body:
            raise ValueError(f"term {term!r}: '*' is allowed only at the end (a prefix pattern)")
        if not normalize(body).strip():
            raise ValueError(f"term {term!r} has no letters or digits once normalised")
    return terms


class Near(_Strict):
    """Proximity: a term counts only when one of ``terms`` starts at most ``within`` words away."""

    terms: list[Term] = Field(min_length=1, max_length=1000)
    within: int = Field(ge=1, le=50)

    _terms = field_validator("terms")(_check_terms)


class LexiconRule(_Strict):
    """Words, phrases and prefix patterns (``refund*``) in one language."""

    type: Literal["lexicon"]
    id: Name
    language: str = Field(pattern=_LANGUAGE, description="ISO 639-1 code; chooses the stemmer")
    description: str | None = Field(default=None, max_length=500)
    terms: list[Term] = Field(min_length=1, max_length=100_000)
    exclude: list[Term] = Field(default_factory=list, max_length=10_000)
    near: Near | None = None
    stem: bool = False

    _terms = field_validator("terms", "exclude")(_check_terms)

    @model_validator(mode="after")
    def _stemmable(self) -> LexiconRule:
        if self.stem and self.language not in STEM_LANGUAGES:
            raise ValueError(
                f"stem: no Snowball stemmer for language {self.language!r} "
                f"(known: {', '.join(sorted(STEM_LANGUAGES))}); set stem: false"
            )
        return self


class FlagRule(_Strict):
    """Every message carrying one of ``flags`` (its current flags, reassessments included)."""

    type: Literal["flag"]
    id: Name
    description: str | None = Field(default=None, max_length=500)
    flags: list[str] = Field(
        min_length=1, json_schema_extra={"items": {"type": "string", "enum": list(ALL_FLAGS)}}
    )

    @field_validator("flags")
    @classmethod
    def _known(cls, flags: list[str]) -> list[str]:
        unknown = sorted(set(flags) - set(ALL_FLAGS))
        if unknown:
            raise ValueError(
                f"unknown flag(s) {', '.join(unknown)} (known: {', '.join(ALL_FLAGS)})"
            )
        return flags


class SampleRule(_Strict):
    """A random share of messages, per chain: deterministic per policy version and record."""

    type: Literal["sample"]
    id: Name
    description: str | None = Field(default=None, max_length=500)
    rate: Decimal = Field(ge=0, le=1, description="share of every chain not named in `chains`")
    chains: dict[Annotated[str, Field(pattern=_CHAIN)], Annotated[Decimal, Field(ge=0, le=1)]] = (
        Field(default_factory=dict)
    )

    def rate_for(self, chain: str) -> Decimal:
        return self.chains.get(chain, self.rate)


Rule = Annotated[LexiconRule | FlagRule | SampleRule, Field(discriminator="type")]


class Policy(_Strict):
    """One version of a supervision policy."""

    format: Literal["coexarchive.policy/v1"]
    name: Name
    version: int = Field(ge=1, le=999_999_999)
    description: str | None = Field(default=None, max_length=2000)
    rules: list[Rule] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.id in seen:
                raise ValueError(f"rules[{index}].id: rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def canonical(self) -> bytes:
        """The policy as canonical JSON (keys sorted): what is sealed and digested."""
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def rule(self, rule_id: str) -> LexiconRule | FlagRule | SampleRule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise ConfigError(f"policy {self.label} has no rule {rule_id!r}")


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, as published in ``schemas/policy.schema.json``."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://coexarchive.invalid/schemas/policy.schema.json"
    schema["title"] = "coexarchive supervision policy (coexarchive.policy/v1)"
    return schema


def _where(location: tuple[int | str, ...]) -> str:
    path = "$"
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("lexicon", "flag", "sample"):
            continue  # pydantic names the union branch; the file has no such member
        else:
            path += f".{part}"
    return path


def parse_policy(document: Any, *, source: str = "policy") -> Policy:
    """Validate a parsed policy document; errors name the file and the path of each bad member."""
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:10]:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{_where(tuple(error['loc']))}: {message}")
        more = f" (and {exc.error_count() - 10} more)" if exc.error_count() > 10 else ""
        raise FormatError(
            f"{source}: not a valid policy: " + "; ".join(problems) + more + " "
            "(schemas/POLICY.md describes the format)"
        ) from None


def load_policy(path: Path) -> Policy:
    """Read a policy file (``.yaml``/``.yml`` or ``.json``) and validate it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read policy {path}: {exc.strerror}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise FormatError(f"{path}: {len(data)} bytes, over the {MAX_POLICY_BYTES}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 (at byte {exc.start})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        document = _yaml(text, path)
    else:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise FormatError(f"{path}: not valid JSON ({exc})") from None
    return parse_policy(document, source=str(path))


def _yaml(text: str, path: Path) -> Any:
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

    class _UniqueKeys(yaml.SafeLoader):  # type: ignore[misc]
        pass

    def mapping(loader: Any, node: Any) -> dict[Any, Any]:
        keys = [loader.construct_object(key) for key, _ in node.value]
        for key in keys:
            if keys.count(key) > 1:
                raise FormatError(
                    f"{path}: line {node.start_mark.line + 1}: key {key!r} appears twice "
                    "(readers disagree on which one counts)"
                )
        return dict(loader.construct_mapping(node))

    _UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=_UniqueKeys)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise FormatError(f"{path}: not valid YAML ({exc})") from None


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` from the command line."""
    match = _SPEC.match(spec)
    if match is None:
        raise ConfigError(f"--policy {spec!r}: expected NAME or NAME@VERSION (e.g. conduct@2)")
    version = match["version"]
    return match["name"], int(version) if version else None
