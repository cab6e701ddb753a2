"""Every result file the cpu book shows is committed under the key the code at HEAD computes for the profile, so
a change that would silently alter a key (and so the numbers behind a table) fails here, before the book build."""

import pytest

from compat.config import get_profile
from compat.experiments import EXPERIMENTS, recipe
from compat.paths import project_root


def _expected(profile):
    for name, experiment in EXPERIMENTS.items():
        if name == "recipe":
            for candidate in profile.recipe.names:
                for seed in profile.recipe.seeds:
                    yield name, recipe.result_key(profile, candidate, seed)
            continue
        for seed in experiment.seeds(profile):
            yield name, experiment.result_key(profile, seed)
        if experiment.runs_ablation(profile):
            yield name, experiment.result_key(profile, profile.protocol.ablation_seed, ablation=True)


@pytest.mark.parametrize("experiment,key", list(_expected(get_profile("cpu"))))
def test_the_cpu_profiles_result_files_are_committed_under_the_keys_head_computes(experiment, key):
    path = project_root() / "results" / experiment / "cpu" / f"{key}.json"
    assert path.is_file(), f"{path} is missing: the cpu profile asks for it, so the book would need training"
