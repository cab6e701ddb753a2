"""Every result file the cpu book shows is committed under the key the code at HEAD computes for the profile, so
a change that would silently alter a key (and so the numbers behind a table) fails here, before the book build."""

import pytest

from compat.config import get_profile
from compat.experiments import EXPERIMENTS
from compat.paths import project_root


def _expected(profile):
    for name, experiment in EXPERIMENTS.items():
        for key in experiment.result_keys(profile):
            yield name, key


@pytest.mark.parametrize("experiment,key", list(_expected(get_profile("cpu"))))
def test_the_cpu_profiles_result_files_are_committed_under_the_keys_head_computes(experiment, key):
    path = project_root() / "results" / experiment / "cpu" / f"{key}.json"
    assert path.is_file(), f"{path} is missing: the cpu profile asks for it, so the book would need training"
