"""container_task.retry_delays: the waits between attempts of set_retry(...). The policies below
are what kfp 2.17 compiles (kfp/dsl/structures.py RetryPolicy.to_proto: defaults written out,
backoffDuration '0s', backoffFactor 2.0, backoffMaxDuration '3600s')."""
import pytest

from localrunner.engine.container_task import retry_delays
from tests.ir_views import retry_view


def delays(policy):
    """retry_delays of a retryPolicy as the IR writes it (read by spec/reader.py)."""
    return retry_delays(retry_view(policy))


def policy(retries, duration='0s', factor=2.0, max_duration='3600s'):
    return {'maxRetryCount': retries, 'backoffDuration': duration, 'backoffFactor': factor,
            'backoffMaxDuration': max_duration}


def test_no_policy_no_retries():
    assert retry_delays(None) == []             # no retryPolicy
    assert delays({}) == []
    assert delays(policy(0)) == []


def test_set_retry_with_defaults_retries_at_once():
    assert delays(policy(3)) == [0.0, 0.0, 0.0]


def test_the_backoff_grows_by_the_factor():
    # set_retry(4, backoff_duration='60s', backoff_factor=2): 60, 120, 240, 480
    assert delays(policy(4, '60s', 2.0)) == [60.0, 120.0, 240.0, 480.0]
    assert delays(policy(3, '1s', 3.0)) == [1.0, 3.0, 9.0]
    assert delays(policy(3, '0.5s', 1.5)) == [0.5, 0.75, 1.125]
    assert delays(policy(2, '5s', 1.0)) == [5.0, 5.0]


def test_each_wait_is_capped_by_the_max_duration():
    assert delays(policy(5, '1s', 3.0, '10s')) == [1.0, 3.0, 9.0, 10.0, 10.0]


def test_nothing_waits_more_than_an_hour():
    assert delays(policy(3, '1800s', 2.0, '7200s')) == [1800.0, 3600.0, 3600.0]
    assert max(delays(policy(20, '1s', 10.0, '86400s'))) == 3600.0


def test_fields_left_out_take_kfps_defaults():
    # an IR written by hand (or an older compiler) may leave fields out: factor 2, cap one hour
    assert delays({'maxRetryCount': 3}) == [0.0, 0.0, 0.0]
    assert delays({'maxRetryCount': 3, 'backoffDuration': '2s'}) == [2.0, 4.0, 8.0]
    assert delays({'maxRetryCount': 2, 'backoffDuration': '3000s'}) == [3000.0, 3600.0]


@pytest.mark.parametrize('duration,first', [('30s', 30.0), ('2m', 120.0), ('1h', 3600.0)])
def test_duration_units(duration, first):
    assert delays(policy(1, duration))[0] == first
