"""Lifecycle transitions driven through the lifecycle services of a node subprocess.

The node starts with ``ros.autostart: false``. A configure with a bad model path fails and
leaves the node alive and unconfigured with the reason in /diagnostics; then configure,
activate, deactivate, cleanup (the engine and the model are freed) and shutdown follow, each
through ``change_state``. Tests run in file order on one node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.srv import Ask, MemoryFile

from _ros_node_helpers import Client, Proc, poll_until, start_node, write_params  # isort: skip

pytestmark = pytest.mark.ros

DOMAIN_ID = 74
NODE = '/flash_vstream'
STATUS = f'{NODE}/memory_status'


@pytest.fixture(scope='module')
def node(tmp_path_factory: pytest.TempPathFactory, tiny_cache_dir: Path) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp('lifecycle')
    params = write_params(
        tmp / 'params.yaml',
        {
            'model.cache_dir': str(tiny_cache_dir),
            'model.device': 'cpu',
            'ros.autostart': False,
            'ros.status_period_s': 0.2,
        },
    )
    proc = start_node(params, DOMAIN_ID, tmp / 'node.log')
    try:
        yield proc
    finally:
        proc.stop(timeout=10.0)


@pytest.fixture(scope='module')
def client(node: Proc) -> Iterator[Client]:
    c = Client(DOMAIN_ID, 'lifecycle_client')
    c.subscribe(MemoryStatus, STATUS)
    c.subscribe(DiagnosticArray, '/diagnostics')
    try:
        yield c
    finally:
        c.close()


def get_state(client: Client) -> str:
    return str(client.call(GetState, f'{NODE}/get_state', GetState.Request()).current_state.label)


def change(client: Client, transition: int) -> bool:
    request = ChangeState.Request()
    request.transition.id = transition
    return bool(client.call(ChangeState, f'{NODE}/change_state', request, timeout=120.0).success)


def set_params(client: Client, **values: Any) -> list[Any]:
    request = SetParameters.Request()
    request.parameters = [
        Parameter(name.replace('__', '.'), value=v).to_parameter_msg()
        for name, v in values.items()
    ]
    assert all(isinstance(p, ParameterMsg) for p in request.parameters)
    return list(client.call(SetParameters, f'{NODE}/set_parameters', request).results)


def ask(client: Client) -> Any:
    return client.call(
        Ask, f'{NODE}/ask', Ask.Request(question='what?', max_new_tokens=2, temperature=-1.0)
    )


def status_in(client: Client, state: str) -> Any:
    return poll_until(
        lambda: client.latest(STATUS),
        lambda s: s.state == state,
        30.0,
        f'memory status in state {state}',
    )


def test_starts_unconfigured_without_autostart(client: Client) -> None:
    assert get_state(client) == 'unconfigured'
    s = status_in(client, 'unconfigured')
    assert s.model == ''
    response = ask(client)
    assert not response.success
    assert 'unconfigured' in response.error_message


def test_failed_configure_leaves_the_node_alive_with_the_reason(
    client: Client, node: Proc
) -> None:
    results = set_params(client, model__family='flash_vstream', model__path='/no/such/model')
    assert all(r.successful for r in results)
    assert not change(client, Transition.TRANSITION_CONFIGURE)
    assert node.alive()
    assert get_state(client) == 'unconfigured'
    response = ask(client)
    assert not response.success
    assert '/no/such/model' in response.error_message

    def failed(d: Any) -> bool:
        return any(
            e.level == DiagnosticStatus.ERROR and '/no/such/model' in e.message for e in d.status
        )

    poll_until(lambda: client.latest('/diagnostics'), failed, 30.0, 'an ERROR diagnostic')


def test_invalid_parameter_values_are_refused(client: Client) -> None:
    (result,) = set_params(client, memory__kind='lstm')
    assert not result.successful
    assert "'lstm'" in result.reason


def test_configure_loads_the_model_and_activate_serves(client: Client) -> None:
    assert all(r.successful for r in set_params(client, model__family='tiny', model__path=''))
    assert change(client, Transition.TRANSITION_CONFIGURE)
    assert get_state(client) == 'inactive'
    s = status_in(client, 'inactive')
    assert s.model.startswith('flash_vstream')
    response = ask(client)
    assert not response.success
    assert 'inactive' in response.error_message
    (refused,) = set_params(client, model__path='/elsewhere')
    assert not refused.successful
    assert 'clean up' in refused.reason
    assert change(client, Transition.TRANSITION_ACTIVATE)
    assert get_state(client) == 'active'
    status_in(client, 'active')
    topics = dict(client.node.get_topic_names_and_types())
    assert '/image_raw' in topics  # the default camera subscription exists while active
    response = ask(client)
    assert response.memory.state == 'active'
    assert response.success or 'memory' in response.error_message


def test_deactivate_stops_ingest_and_cleanup_frees_the_model(
    client: Client, node: Proc, tmp_path: Path
) -> None:
    assert change(client, Transition.TRANSITION_DEACTIVATE)
    assert get_state(client) == 'inactive'
    subs = client.node.get_subscriptions_info_by_topic('/image_raw')
    assert not [s for s in subs if s.node_name == 'flash_vstream']
    # Inactive keeps the memory: it can be saved, loaded and reset (questions are refused).
    path = tmp_path / 'inactive.fvs'
    saved = client.call(MemoryFile, f'{NODE}/save_memory', MemoryFile.Request(path=str(path)))
    assert saved.success, saved.message
    assert saved.message.startswith(f'memory saved to {path}')
    assert path.stat().st_size == saved.bytes > 0
    loaded = client.call(MemoryFile, f'{NODE}/load_memory', MemoryFile.Request(path=str(path)))
    assert loaded.success, loaded.message
    assert loaded.message.startswith(f'memory loaded from {path}')
    reset = client.call(Trigger, f'{NODE}/reset_memory', Trigger.Request())
    assert reset.success, reset.message
    assert change(client, Transition.TRANSITION_CLEANUP)
    assert get_state(client) == 'unconfigured'
    s = status_in(client, 'unconfigured')
    assert s.model == ''  # no engine, no model
    assert 'engine stopped, model freed' in node.text()
    assert change(client, Transition.TRANSITION_CONFIGURE)  # and it loads again
    assert get_state(client) == 'inactive'


def test_shutdown_transition_then_sigint_exits_cleanly(client: Client, node: Proc) -> None:
    assert change(client, Transition.TRANSITION_INACTIVE_SHUTDOWN)
    assert get_state(client) == 'finalized'
    status_in(client, 'finalized')
    rc = node.stop(timeout=30.0)
    log = node.text()
    assert rc == 0, log[-3000:]
    assert 'Traceback' not in log, log[-3000:]
