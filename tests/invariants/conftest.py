"""Settings of the lifecycle machine, chosen by the environment.

- `MACHINE_PROFILE=machine` (the default, what `make test` runs): a bounded run from a fixed seed;
- `MACHINE_PROFILE=soak` (`make soak`): `SOAK_EXAMPLES` examples of `SOAK_STEPS` steps from
  `MACHINE_SEED` (a random one, printed, when unset).
`MACHINE_EXAMPLES` / `MACHINE_STEPS` change the bounded run; `MACHINE_SEED` reruns any seed.
"""

import os
import random

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings

FIXED_SEED = 20261201

_common = dict(
    deadline=None,
    database=None,  # a run is reproduced by its seed alone
    suppress_health_check=list(HealthCheck),
    print_blob=True,
    report_multiple_bugs=False,
    # Explaining a failure traces every line of Tally and the simulator: minutes for nothing.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    + ([] if os.environ.get("MACHINE_NO_SHRINK") else [Phase.shrink]),
    verbosity=Verbosity.verbose if os.environ.get("MACHINE_VERBOSE") else Verbosity.normal,
)
settings.register_profile(
    "machine",
    max_examples=int(os.environ.get("MACHINE_EXAMPLES", 18)),
    stateful_step_count=int(os.environ.get("MACHINE_STEPS", 35)),
    **_common,
)
settings.register_profile(
    "soak",
    max_examples=int(os.environ.get("SOAK_EXAMPLES", 2000)),
    stateful_step_count=int(os.environ.get("SOAK_STEPS", 40)),
    **_common,
)


@pytest.fixture
def machine_settings():
    return settings.get_profile(os.environ.get("MACHINE_PROFILE", "machine"))


@pytest.fixture
def machine_seed():
    if os.environ.get("MACHINE_SEED"):
        return int(os.environ["MACHINE_SEED"])
    if os.environ.get("MACHINE_PROFILE") == "soak":
        chosen = random.SystemRandom().randrange(2**32)
        print(f"\nThe lifecycle machine runs with seed {chosen}.")
        return chosen
    return FIXED_SEED
