"""A job's pubs as the program the client's executor primitives post, prepared ahead of the post.

``executor_sampler.Sampler.run`` and ``executor_estimator.Estimator.run`` each do two things: a
client-side preparation (the pubs become an executor ``QuantumProgram``: twirling, the TREX
calibration, observables turned into measurement bases, dynamical decoupling) and a post through
the public ``Executor``. The Estimator's preparation is CPU work (about half a second per 20-pub
job), and so is encoding its program (about 0.2 s more); a post must not compute while it holds
a pending-job slot or the posting lock. So qjm does the two apart: ``prepare`` does both in the
transpile step and keeps the result as JSON (``Prepared``: the executor's own ``ParamsModel``
v2.0, exactly what goes on the wire); ``post`` sends it later as it is. The program carries the
primitive's semantic role, so the client's result decoder still hands back that primitive's
``PrimitiveResult``.

qjm owns ``default_shots`` (the set's shots; none for the Estimator, whose shots follow from the
precision qjm sized its jobs by), ``default_precision`` and the job tags; everything else of the
user's primitive options goes through as given.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from qiskit.providers import BackendV2

from ...errors import ExecutorError
from ..base import JobWork, Primitive
from . import client_patches

log = logging.getLogger(__name__)

#: The executor params schema qjm stores and posts (the one the client's ``Executor`` posts).
PARAMS_SCHEMA = "v2.0"
#: Version of the stored JSON's own layout, so a future change can tell old jobs apart.
FORMAT = 1
#: The semantic roles the client's result decoders dispatch on, per primitive.
SEMANTIC_ROLES = {Primitive.SAMPLER: "sampler_v2", Primitive.ESTIMATOR: "estimator_v2"}


def primitive_options(work: JobWork) -> Any:
    """The primitive's options object: the user's fields, with qjm's defaults on top."""
    from qiskit_ibm_runtime.options_models import EstimatorOptions, SamplerOptions

    user = dict(work.options.primitive_options or {})
    try:
        options: Any = (SamplerOptions if work.primitive is Primitive.SAMPLER else EstimatorOptions)(**user)
    except ValueError as exc:  # run() validates them; a set stored by another version may not be
        raise ExecutorError(f"the {work.primitive.value} options of this set are not valid: {exc}") from exc
    if work.primitive is Primitive.SAMPLER:
        options.default_shots = work.options.shots
    else:
        options.default_shots = None  # shots follow from the precision, as qjm counted them
        if work.options.precision is not None:
            options.default_precision = work.options.precision
    return options


def worth_preparing(work: JobWork) -> bool:
    """Whether the preparation is CPU work to do ahead of the post: always for the Estimator; for
    the Sampler only with twirling (building samplexes) or dynamical decoupling (scheduling).
    A plain Sampler job only serializes its circuits, as any post did before."""
    if work.primitive is Primitive.ESTIMATOR:
        return True
    options = primitive_options(work)
    return bool(options.twirling.enable_gates or options.twirling.enable_measure or options.dynamical_decoupling.enable)


@dataclass(frozen=True)
class Prepared:
    """A job ready to post: the executor params as the client sends them (JSON values) and the
    ``ExecutorOptions`` fields that go with them (the job tags are set at the post)."""

    params: dict[str, Any]
    executor_options: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "executor_options": self.executor_options, "params": self.params},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Prepared | None:
        """None for a layout this version does not know: the job is then prepared again."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            log.warning("a prepared job in a layout this qjm does not know: preparing it again")
            return None
        return cls(data["params"], data["executor_options"])


def prepare(work: JobWork, backend: BackendV2) -> Prepared:
    """The client's own preparation of the job's pubs, encoded as its ``Executor`` would."""
    from qiskit_ibm_runtime.exceptions import IBMInputValueError
    from qiskit_ibm_runtime.quantum_program.params_converters import QUANTUM_PROGRAM_PARAMS_CONVERTERS

    options = primitive_options(work)
    try:
        if work.primitive is Primitive.SAMPLER:
            from qiskit_ibm_runtime.executor_sampler.prepare import prepare as client_prepare
        else:
            from qiskit_ibm_runtime.executor_estimator.prepare import prepare as client_prepare
        program, executor_options = client_prepare(list(work.pubs), options, None, add_tags=False, backend=backend)
    except (IBMInputValueError, ValueError, TypeError) as exc:
        raise ExecutorError(f"the {work.primitive.value} cannot prepare this job's pubs: {exc}") from exc
    client_patches.set_semantic_role(program, SEMANTIC_ROLES[work.primitive])
    params = QUANTUM_PROGRAM_PARAMS_CONVERTERS[PARAMS_SCHEMA].encoder(program, executor_options)
    # Simulator options only matter to the client's local testing mode, never to a post.
    return Prepared(params.model_dump(mode="json"), executor_options.model_dump(mode="json", exclude={"simulator"}))


def executions(prepared: Prepared) -> list[tuple[Any, int]]:
    """Each item of a prepared program with its executions: the program's shots times the
    item's extent, its posted shape broadcast with what its arguments add (as the executor's
    schema defines an item: randomizations, measurement bases, parameter sweeps)."""
    import math

    import numpy as np
    from ibm_quantum_schemas.executor.version_2_0 import ParamsModel
    from qiskit_ibm_runtime.quantum_program.params_converters import QUANTUM_PROGRAM_PARAMS_CONVERTERS

    model = ParamsModel.model_validate(prepared.params)
    program, _ = QUANTUM_PROGRAM_PARAMS_CONVERTERS[PARAMS_SCHEMA].decoder(model)
    return [(item.circuit, program.shots * math.prod(np.broadcast_shapes(tuple(posted.shape), item.shape)))
            for item, posted in zip(program.items, model.quantum_program.items, strict=True)]


def post(mode: Any, prepared: Prepared, tags: list[str]) -> Any:
    """Post a prepared job in ``mode`` (a batch or a backend), tagged; returns the client's job."""
    from qiskit_ibm_runtime.options_models import ExecutorOptions

    options = ExecutorOptions(**prepared.executor_options)
    options.environment.job_tags = list(tags)
    return client_patches.post_executor_params(mode, prepared.params, options)
