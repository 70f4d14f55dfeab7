"""What code written for the old ``IBMQJobManager`` passes to ``run()`` and qjm takes on its own
terms: ``parameter_binds`` (bound as ``assemble`` bound them), the old ``run_config`` keys, and
``job_share_level``. Each is accepted where it still means something and refused, before anything
is written, with an error that says what to do instead where it does not."""

from .run_config import bind_parameters, check_run_config, warn_job_share_level

__all__ = ["bind_parameters", "check_run_config", "warn_job_share_level"]
