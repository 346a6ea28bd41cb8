"""The Instance model: one SWE-bench row, checked (ids, images, parsers); choosing and hashing instances."""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import types
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from ci_eval.errors import InputError

# SWE-bench ids are owner__repo-number. An id names folders and containers, so nothing that
# could leave a folder (/, .., NUL) or overflow a file name gets in.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_id(value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        shown = value[:60].encode("unicode_escape").decode() + ("…" if len(value) > 60 else "")
        raise ValueError(f"instance id {shown!r} must be 1 to 200 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return value


def check_text(value: Any, what: str = "text") -> Any:
    """Text that cannot be written as UTF-8 (a lone surrogate from a JSON escape) is refused
    here, not when a result line or a request would carry it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} contains a lone surrogate (invalid Unicode)") from None
    return value


# A Docker image reference, as distribution's reference grammar has it: an optional registry host
# (with a port), lower-case path components, an optional tag and an optional sha256 digest.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:localhost|{_LABEL}(?:\.{_LABEL})+)(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
                             r"(?:@sha256:[a-f0-9]{64})?")
# The images a dataset may name unless --image-pattern says otherwise: the official harness's
# (SWE-bench's namespace on Docker Hub) and this project's bundled demo, which is built locally.
OFFICIAL_IMAGES = (r"(?:docker\.io/)?swebench/sweb\.eval\.[a-z0-9_]+\.[a-z0-9_.-]+(?::[\w][\w.-]*)?"
                   r"|ci-eval-fixtures/[a-z0-9_.-]+(?::[\w][\w.-]*)?")


def allowed_images(instances: Sequence[Instance], pattern: str | None, template: str | None = None) -> None:
    """Every instance's image matches `pattern`, else what `template` makes, else the official
    namespace, or one line: a dataset row (or a plan file) picks the image its tests run in, so a
    row is not trusted to pick any."""
    rule = re.compile(pattern or (templated(template) if template else OFFICIAL_IMAGES))
    outside = [i for i in instances if not rule.fullmatch(i.image)]
    if outside:
        first = outside[0]
        where = "--image-pattern" if pattern else "--image-template's registry" if template else \
            "the official swebench/ namespace"
        raise InputError(f"{len(outside)} instance(s) name an image outside {where} "
                         f"({first.instance_id}: {first.image[:80]!r}); pass --image-pattern REGEX to allow "
                         "the images of your own dataset")


def with_image_template(instances: Sequence[Instance], template: str | None) -> list[Instance]:
    """Each instance's image from another registry: `template` with {instance_id} filled in
    (Epoch AI's re-layered images: ghcr.io/epoch-research/swe-bench.eval.x86_64.{instance_id}:latest)."""
    if not template:
        return list(instances)
    return [i.model_copy(update={"image": image_for(template, i.instance_id)}) for i in instances]


def image_for(template: str, instance_id: str) -> str:
    image = template.replace("{instance_id}", instance_id.lower())
    if not IMAGE_REFERENCE.fullmatch(image):
        raise InputError(f"--image-template makes {image[:80]!r} for {instance_id}, which is not a Docker image "
                         "reference (registry/name:tag, lower case)")
    return image


def templated(template: str) -> str:
    """The images a template can make: its text, with an instance id where {instance_id} stands."""
    head, _, tail = template.partition("{instance_id}")
    return re.escape(head) + r"[a-z0-9_.-]+" + re.escape(tail)


def classic_image(instance_id: str) -> str:
    """The official harness's image for an instance (`__` is `_1776_` on Docker Hub)."""
    from swebench.task.checks import expected_image

    image: str = expected_image(instance_id)
    return image


def classic_parser(repo: str) -> str:
    """swebench's log parser for a repository, by its registered name."""
    parser = _parsers_by_repo().get(repo)
    if parser is None:
        raise ValueError(f"has no log_parser and swebench knows no parser for repository {repo!r}; "
                         "add a log_parser column")
    return parser


@functools.cache
def _parsers_by_repo() -> dict[str, str]:
    from swebench.harness import log_parsers
    from swebench.harness.log_parsers import PARSER_REGISTRY

    # The registry names each parser function; several names alias one function: take the first.
    name_of: dict[int, str] = {}
    for name, function in PARSER_REGISTRY.items():
        name_of.setdefault(id(function), name)
    # Each language's module keeps a MAP_REPO_TO_PARSER_<LANG> of repository -> parser function.
    by_repo: dict[str, str] = {}
    for module in vars(log_parsers).values():
        if isinstance(module, types.ModuleType):
            for attr, value in vars(module).items():
                if attr.startswith("MAP_REPO_TO_PARSER") and isinstance(value, dict):
                    by_repo.update({repo: name_of[id(f)] for repo, f in value.items() if id(f) in name_of})
    return by_repo


@functools.cache
def known_parsers() -> frozenset[str]:
    from swebench.harness.log_parsers import PARSER_REGISTRY

    return frozenset(PARSER_REGISTRY)


@functools.cache
def known_eval_types() -> frozenset[str]:
    from swebench.harness.constants import EvalType

    return frozenset(t.value for t in EvalType)


class Instance(BaseModel):
    """One SWE-bench row, in the shape `swebench.harness.utils.make_test_spec` expects."""

    model_config = ConfigDict(extra="allow", frozen=True)

    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    patch: str
    test_patch: str
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str]
    version: str
    image: str
    eval_script: str = ""  # empty: a classic-schema row, which can be planned but not graded
    log_parser: str
    eval_type: str = "pass_and_fail"
    difficulty: str | None = None

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        # The Hub ships these as JSON strings; local files often as lists.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("is a string but not a JSON list") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _classic(cls, row: Any) -> Any:
        """A row of the classic 13-column schema (mirrors, parquet exports, SWE-bench Lite) has no
        image or log_parser: derive both as swebench names them."""
        if isinstance(row, dict) and isinstance(row.get("instance_id"), str) and isinstance(row.get("repo"), str):
            if not row.get("image"):
                row = {**row, "image": classic_image(row["instance_id"])}
            if not row.get("log_parser"):
                row = {**row, "log_parser": classic_parser(row["repo"])}
        return row

    @model_validator(mode="before")
    @classmethod
    def _utf8(cls, row: Any) -> Any:
        if isinstance(row, dict):  # every field, the extra ones too: all of them are hashed and written
            for key, value in row.items():
                for item in value if isinstance(value, list) else [value]:
                    check_text(item, f"field {key!r}")
        return row

    @field_validator("instance_id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_id(value)

    @field_validator("image")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not IMAGE_REFERENCE.fullmatch(value):
            raise ValueError(f"{value[:80]!r} is not a Docker image reference (name[:tag][@sha256:digest])")
        return value

    @field_validator("log_parser", "eval_type")
    @classmethod
    def _known_to_swebench(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "log_parser" and value not in known_parsers():
            raise ValueError(f"{value!r} is not a log parser of swebench (e.g. parse_log_pytest)")
        if info.field_name == "eval_type" and value not in known_eval_types():
            raise ValueError(f"{value!r} is not one of {', '.join(sorted(known_eval_types()))}")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @property
    def family(self) -> tuple[str, str]:
        """Instances of one repo and version share an environment image family."""
        return (self.repo, self.version)


def select(instances: Sequence[Instance], ids: Iterable[str]) -> list[Instance]:
    """Keep the named instances (all when none are named); unknown ids are an error."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return list(instances)
    known = {inst.instance_id for inst in instances}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        several = any("," in i or " " in i for i in unknown)
        raise InputError(
            f"unknown instance ids: {', '.join(unknown)} (not in the dataset; check --instance-ids"
            + ("; for several, repeat the flag: --instance-ids A --instance-ids B" if several else "") + ")"
        )
    keep = set(wanted)
    return [inst for inst in instances if inst.instance_id in keep]


def subset(instances: Sequence[Instance], pattern: str | None, size: int | None, seed: int) -> list[Instance]:
    """Those whose id matches `pattern`, then `size` of them drawn with `seed` (dataset order kept)."""
    if not instances:
        raise InputError("the dataset has no instances (an empty file or split); check --dataset and --split")
    chosen = [i for i in instances if pattern is None or re.search(pattern, i.instance_id)]
    if not chosen:
        raise InputError(f"no instance id matches --filter {pattern!r}")
    if size is not None and size < len(chosen):
        keep = set(random.Random(seed).sample(sorted(i.instance_id for i in chosen), size))
        chosen = [i for i in chosen if i.instance_id in keep]
    return chosen


def fingerprint(instances: Sequence[Instance]) -> str:
    """A short hash of the rows: shards of one run must have graded the same data."""
    digest = hashlib.sha256()
    for inst in sorted(instances, key=lambda i: i.instance_id):
        digest.update(inst.model_dump_json().encode())
    return digest.hexdigest()[:16]
