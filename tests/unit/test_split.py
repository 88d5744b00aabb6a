import math

import pytest

from lambdas.preprocess.logic import plan_job_sizes
from lambdas.shared.errors import InputValidationError


@pytest.mark.parametrize(
    ("total", "max_per_job"), [(100, 100), (300, 150), (301, 150), (2_200_000, 50_000), (99_999, 50_000), (1000, 999)]
)
def test_split_is_balanced_and_within_limits(total, max_per_job):
    sizes = plan_job_sizes(total, max_per_job)
    assert sum(sizes) == total
    assert len(sizes) == math.ceil(total / max_per_job)
    assert max(sizes) - min(sizes) <= 1
    assert min(sizes) >= 100 and max(sizes) <= max_per_job


def test_reference_case_gives_45_jobs():
    # GIVEN SimpleCoT's train split (2.2 million rows, a little over 44 x 50,000) and the default job size
    # THEN 45 balanced jobs
    sizes = plan_job_sizes(2_240_000, 50_000)
    assert len(sizes) == 45 and set(sizes) == {49_777, 49_778}


def test_fewer_than_100_rows_is_rejected():
    with pytest.raises(InputValidationError, match="at least 100"):
        plan_job_sizes(99, 50_000)


def test_a_split_that_would_leave_small_jobs_names_the_fix():
    with pytest.raises(InputValidationError, match="raise max_records_per_job"):
        plan_job_sizes(101, 100)


def test_max_num_jobs_never_drops_rows():
    with pytest.raises(InputValidationError, match="no row is ever dropped"):
        plan_job_sizes(1000, 100, max_num_jobs=5)
    assert plan_job_sizes(1000, 100, max_num_jobs=10) == [100] * 10
