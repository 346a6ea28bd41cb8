"""plan.json: the plan job's plan, and the sample design that says how its instances were drawn.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from ci_eval.instances import Instance
from ci_eval.untrusted import UntrustedText

PLAN_VERSION = 1


class Stratum(BaseModel):
    """One stratum of a sample: how many instances of the full set it holds (N_h), which of them
    were drawn (n_h of them), and the spread of outcomes its allocation assumed."""

    name: UntrustedText  # it rides in artifacts: shown only escaped
    population: int = Field(ge=1)
    chosen: list[str]
    sd: float = 0.0
    weight: float = 1.0  # N_h / N: its share of the full set, in the stratified estimate


class SampleDesign(BaseModel):
    """How a run's instances were drawn from the full set, so that a report can estimate the full
    set's resolve rate and its change (a stratified estimator), not only the sample's."""

    kind: Literal["all", "random", "informative"]
    seed: int = 0
    population: int = Field(ge=0)  # the full set the sample stands for
    strata: list[Stratum]
    baseline_runs: int = 0  # the history an informative sample was drawn from


class Plan(BaseModel):
    """plan.json: the plan made once by the plan job; every shard runs from it, so no shard
    reloads (or re-plans) the dataset and all of them agree on what they run."""

    schema_version: int = PLAN_VERSION
    dataset: str
    split: str
    revision: str | None = None
    dataset_fingerprint: str  # of the whole dataset the instances were chosen from
    shards: list[list[str]]
    costs: dict[str, float]
    instances: list[Instance]  # the chosen ones, whole, in dataset order
    sample: SampleDesign | None = None  # how they were drawn (None: a plan older than the field)

    @property
    def of(self) -> int:
        return len(self.shards)

    @model_validator(mode="after")
    def _covering(self) -> Plan:
        if sorted(i for ids in self.shards for i in ids) != sorted(i.instance_id for i in self.instances):
            raise ValueError("its shards do not cover its instances exactly once")
        return self
