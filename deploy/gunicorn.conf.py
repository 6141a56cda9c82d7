"""gunicorn settings for a deployed study: `gunicorn -c deploy/gunicorn.conf.py 'study:create_app()'`.

Set STUDY_DATABASE_URL (PostgreSQL for more than one machine) and STUDY_SECRET_KEY in the environment.
"""
import multiprocessing
import os

bind = os.environ.get("STUDY_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("STUDY_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("STUDY_THREADS", 2))
timeout = 30
graceful_timeout = 20
accesslog = "-"
forwarded_allow_ips = os.environ.get("STUDY_FORWARDED_ALLOW_IPS", "127.0.0.1")
