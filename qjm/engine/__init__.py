"""What the workers run: the pipeline's steps, their dispatch as Celery tasks, polling, the reconciler."""
