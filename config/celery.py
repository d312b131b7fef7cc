"""The Celery app. Queues: ``default`` (light work) and ``gpu`` (generation, training).

Workers must not initialise CUDA in their parent process: tasks import torch lazily, inside the
task, so a prefork child (or the ``solo`` pool) is the only process that touches the GPU.
"""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(Queue(name, Exchange(name), routing_key=name) for name in ("default", "gpu"))
app.autodiscover_tasks()
