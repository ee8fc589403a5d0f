import os

from hypothesis import HealthCheck, settings

# Derandomized: the same examples every run, so a failure is reproducible and CI is stable.
settings.register_profile(
    "minicnn", derandomize=True, deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", deadline=None, max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minicnn"))
