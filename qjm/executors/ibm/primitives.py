"""A job's pubs as the program the client's executor primitives post, prepared ahead of the post.

``executor_sampler.Sampler.run`` and ``executor_estimator.Estimator.run`` each do two things: a
client-side preparation (the pubs become an executor ``QuantumProgram``: twirling, the TREX
calibration, observables turned into measurement bases, dynamical decoupling) and a post through
the public ``Executor``. The Estimator's preparation is CPU work (about half a second per 20-pub
job), and a post must not compute while it holds a pending-job slot or the posting lock, so qjm
does the two apart: ``build`` is the preparation, run in the transpile step; ``encode`` keeps it
as JSON in the executor's own wire format (``ParamsModel`` v2.0, what the post sends anyway);
``post`` decodes it and posts it later. The program carries the primitive's semantic role, so
the client's result decoder still hands back that primitive's ``PrimitiveResult``.

qjm owns ``default_shots`` (the set's shots; none for the Estimator, whose shots follow from the
precision qjm sized its jobs by), ``default_precision`` and the job tags; everything else of the
user's primitive options goes through as given.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from qiskit.providers import BackendV2

from ...errors import ExecutorError
from ..base import JobWork, Primitive
from . import client_patches

log = logging.getLogger(__name__)

#: The executor params schema qjm stores and posts (the client's ``Executor`` posts this one).
PARAMS_SCHEMA = "v2.0"
#: Version of the stored JSON's own layout, so a future change can tell old jobs apart.
FORMAT = 1
#: The semantic roles the client's result decoders dispatch on, per primitive.
SEMANTIC_ROLES = {Primitive.SAMPLER: "sampler_v2", Primitive.ESTIMATOR: "estimator_v2"}


def primitive_options(work: JobWork) -> Any:
    """The primitive's options object: the user's fields, with qjm's defaults on top."""
    from qiskit_ibm_runtime.options_models import EstimatorOptions, SamplerOptions

    user = dict(work.options.primitive_options or {})
    if work.primitive is Primitive.SAMPLER:
        options: Any = SamplerOptions(**user)
        options.default_shots = work.options.shots
    else:
        options = EstimatorOptions(**user)
        options.default_shots = None  # shots follow from the precision, as qjm counted them
        if work.options.precision is not None:
            options.default_precision = work.options.precision
    return options


def worth_preparing(work: JobWork) -> bool:
    """Whether the preparation is CPU work to do ahead of the post: always for the Estimator; for
    the Sampler only with twirling (building samplexes) or dynamical decoupling (scheduling).
    A plain Sampler job only serializes its circuits, which the post does anyway."""
    if work.primitive is Primitive.ESTIMATOR:
        return True
    options = primitive_options(work)
    return bool(options.twirling.enable_gates or options.twirling.enable_measure or options.dynamical_decoupling.enable)


def build(work: JobWork, backend: BackendV2) -> tuple[Any, Any]:
    """The client's own preparation of the job's pubs: ``(QuantumProgram, ExecutorOptions)``."""
    from qiskit_ibm_runtime.exceptions import IBMInputValueError

    try:
        options = primitive_options(work)
        if work.primitive is Primitive.SAMPLER:
            from qiskit_ibm_runtime.executor_sampler.prepare import prepare
        else:
            from qiskit_ibm_runtime.executor_estimator.prepare import prepare
        program, executor_options = prepare(list(work.pubs), options, None, add_tags=False, backend=backend)
    except (IBMInputValueError, ValueError, TypeError) as exc:
        raise ExecutorError(f"the {work.primitive.value} cannot prepare this job's pubs: {exc}") from exc
    client_patches.set_semantic_role(program, SEMANTIC_ROLES[work.primitive])
    return program, executor_options


def encode(program: Any, executor_options: Any) -> str:
    """The prepared job as JSON text: the params the post sends, and the executor's options."""
    from qiskit_ibm_runtime.quantum_program.params_converters import QUANTUM_PROGRAM_PARAMS_CONVERTERS

    params = QUANTUM_PROGRAM_PARAMS_CONVERTERS[PARAMS_SCHEMA].encoder(program, executor_options)
    return json.dumps({
        "format": FORMAT,
        # Simulator options only matter to the client's local testing mode, never to a post.
        "executor_options": executor_options.model_dump(mode="json", exclude={"simulator"}),
        "params": params.model_dump(mode="json"),
    }, separators=(",", ":"))


def decode(text: str) -> tuple[Any, Any] | None:
    """``encode``'s text back as ``(QuantumProgram, ExecutorOptions)``; None for a layout this
    version does not know (the job is then prepared again)."""
    from qiskit_ibm_runtime.options_models import ExecutorOptions
    from qiskit_ibm_runtime.quantum_program.params_converters import QUANTUM_PROGRAM_PARAMS_CONVERTERS

    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        log.warning("a prepared job in a layout this qjm does not know: preparing it again")
        return None
    converter = QUANTUM_PROGRAM_PARAMS_CONVERTERS[PARAMS_SCHEMA]
    program, _ = converter.decoder(converter.model.model_validate(data["params"]))
    return program, ExecutorOptions(**data["executor_options"])


def post(mode: Any, program: Any, executor_options: Any, tags: list[str]) -> Any:
    """Post a prepared program through the client's ``Executor``, tagged; returns the client's job."""
    from qiskit_ibm_runtime import Executor

    executor_options.environment.job_tags = list(tags)
    return Executor(mode=mode, options=executor_options).run(program)
