"""The Celery application that runs qjm's tasks: ``celery -A workers.app worker``."""
