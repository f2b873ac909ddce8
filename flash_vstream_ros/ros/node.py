"""The ``flash_vstream`` lifecycle node: camera topics in, answers and memory status out.

Lifecycle (the llama_ros pattern):

* configure: read the parameters into an AppConfig, build the Engine and start it (loads the
  model, restores the memory when configured). A failure is logged with its reason and the
  node stays unconfigured and alive.
* activate: subscribe to ``ros.image_topics`` (sensor_msgs/Image) and ``ros.compressed_topics``
  (sensor_msgs/CompressedImage) with the QoS of the ``ros.qos_*`` parameters.
* deactivate: unsubscribe (ingest stops; the memory stays and can be saved).
* cleanup / shutdown: stop the engine (saves when ``persistence.save_on_shutdown``) and free the
  model (and the CUDA cache).

``ros.autostart`` (default true) configures and activates at start so ``ros2 run`` just works.
The ask service, the action, the memory services, ``~/memory_status`` and ``/diagnostics`` exist
in every state; questions are answered while active and refused with the reason otherwise.

The camera subscriptions and their callbacks are in flash_vstream_ros.ros.cameras.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import gc
import signal
import sys
import traceback
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
import rclpy.logging
from rclpy.parameter import Parameter
from rclpy.timer import Timer
from sensor_msgs.msg import Image

from flash_vstream_ros.config import AppConfig
from flash_vstream_ros.engine import Engine
from flash_vstream_ros.errors import FlashVStreamError
from flash_vstream_ros.msg import MemoryStatus
from flash_vstream_ros.ros import params
from flash_vstream_ros.ros.answering import AskServer
from flash_vstream_ros.ros.cameras import CameraInputs, camera_entries
from flash_vstream_ros.ros.compat import (
    ExternalShutdownException,
    init_without_signal_handlers,
)
from flash_vstream_ros.ros.convert import to_status_msg
from flash_vstream_ros.ros.diagnostics import DiagnosticsState, diagnostic_array
from flash_vstream_ros.ros.logs import Throttle, bridge_core_logging, unbridge_core_logging
from flash_vstream_ros.ros.montage import montage

NODE_NAME = 'flash_vstream'
EXECUTOR_THREADS = 8
SHUTDOWN_TIMEOUT_S = 5.0  # longest wait for running callbacks once the engine has stopped
EngineFactory = Callable[[AppConfig], Engine]


class FlashVStreamNode(LifecycleNode):
    """Lifecycle node around one :class:`Engine` (see the module docstring)."""

    def __init__(self, engine_factory: EngineFactory = Engine, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._config: AppConfig | None = None
        self._state = 'unconfigured'
        self._problem = ''  # why the last configure failed
        self._throttle = Throttle()
        self._inputs = CameraInputs(self, lambda: self._engine, self._warn)
        self._diag = DiagnosticsState()
        self._log_handler = bridge_core_logging(self.get_logger())
        self._param_problems = params.declare_config_parameters(self)
        params.install_validator(
            self, lambda: self._state in ('inactive', 'active'), self._on_parameters_set
        )
        self._serve_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._status_pub = self.create_publisher(MemoryStatus, '~/memory_status', 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._frames_pub = self.create_publisher(Image, '~/memory_frames', 1)
        self._ask = AskServer(
            self, self._serve_group, self._answerer, lambda: self._state, self._memory_holder
        )
        self._status_timer: Timer | None = None
        self._frames_timer: Timer | None = None
        self._make_timers()
        for problem in self._param_problems:
            self.get_logger().error(problem)

    # ------------------------------------------------------------------ lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:
            self._fail_configure(exc)
            return TransitionCallbackReturn.FAILURE
        self._state, self._problem = 'inactive', ''
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        if self._param_problems:
            raise FlashVStreamError('; '.join(self._param_problems))
        config = params.read_config(self)
        camera_entries(self, config)  # refuse duplicate camera names before loading anything
        engine = self._engine_factory(config)
        engine.start()
        self._engine, self._config = engine, engine.config
        self.get_logger().info(f'configured: {engine.status().model}, memory {config.memory.kind}')

    def _fail_configure(self, exc: Exception) -> None:
        self._problem = f'{type(exc).__name__}: {exc}'
        if not isinstance(exc, FlashVStreamError):
            self.get_logger().error(traceback.format_exc())
        self.get_logger().error(f'configure failed, the node stays unconfigured: {self._problem}')
        self._free_engine()
        _release_memory()  # what a half-started engine allocated (its frames are gone by now)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._config is None:
            self.get_logger().error('activate failed: no engine (configure first)')
            return TransitionCallbackReturn.FAILURE
        try:
            self._inputs.subscribe(self._config)
        except Exception as exc:
            self.get_logger().error(f'activate failed: {type(exc).__name__}: {exc}')
            self._inputs.unsubscribe()
            return TransitionCallbackReturn.FAILURE
        self._state = 'active'
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._inputs.unsubscribe()
        self._state = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._inputs.unsubscribe()
        self._free_engine()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._inputs.unsubscribe()
        self._free_engine()
        self._state = 'finalized'
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f'error while {state.label}: freeing the engine')
        self._inputs.unsubscribe()
        self._free_engine()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def start(self) -> bool:
        """Configure and activate (what ros.autostart does); False when either fails."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop everything this node started (SIGINT path): unsubscribe, stop the engine."""
        self._inputs.unsubscribe()
        self._free_engine()
        unbridge_core_logging(self._log_handler)

    def _free_engine(self) -> None:
        engine, self._engine, self._config = self._engine, None, None
        if engine is None:
            return
        try:
            engine.stop()
        except Exception as exc:
            self.get_logger().error(f'engine stop failed: {type(exc).__name__}: {exc}')
        del engine
        _release_memory()
        self.get_logger().info('engine stopped, model freed')

    def _warn(self, kind: str, text: str) -> None:
        period = float(self.get_parameter('ros.warn_throttle_s').value)
        held = self._throttle.check(kind, period)
        if held is None:
            return
        suffix = f' ({held} similar warnings held back)' if held else ''
        self.get_logger().warning(text + suffix)

    # ------------------------------------------------------------------ questions

    def _memory_holder(self) -> tuple[Engine | None, str]:
        """The engine for reset/save/load: configured is enough (inactive keeps the memory)."""
        engine = self._engine
        if engine is not None and self._state in ('inactive', 'active'):
            return engine, ''
        return self._answerer()

    def _answerer(self) -> tuple[Engine | None, str]:
        engine = self._engine
        if engine is not None and self._state == 'active':
            return engine, ''
        why = f'node {self.get_fully_qualified_name()} is {self._state}'
        if self._state == 'inactive':
            return None, f'{why}: activate it to answer questions'
        if self._problem:
            return None, f'{why}: configure failed: {self._problem}'
        return None, f'{why}: configure and activate it (the model is not loaded)'

    # ------------------------------------------------------------------ status topics

    def _make_timers(self, values: dict[str, Any] | None = None) -> None:
        """(Re)create the status and montage timers; ``values`` are periods being set."""
        for timer in (self._status_timer, self._frames_timer):
            if timer is not None:
                self.destroy_timer(timer)
        current = params.parameter_values(self, ['ros.status_period_s', 'ros.frames_period_s'])
        current.update(values or {})
        status_period = float(current['ros.status_period_s'])
        frames_period = float(current['ros.frames_period_s'])
        # Wall-clock timers: status keeps flowing when sim time pauses (a bag ended or paused).
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._status_timer = self.create_timer(
            status_period, self._publish_status, callback_group=self._timer_group, clock=steady
        )
        self._frames_timer = None
        if frames_period > 0:
            self._frames_timer = self.create_timer(
                frames_period, self._publish_frames, callback_group=self._timer_group, clock=steady
            )

    def _on_parameters_set(self, changed: Sequence[Parameter]) -> None:
        """Apply accepted live changes (called before rclpy stores the new values).

        The engine's generation settings go first: they are the only ones that can still be
        refused (ConfigError, and then nothing has changed).
        """
        generation = {
            p.name.removeprefix('generation.'): p.value
            for p in changed
            if p.name.startswith('generation.')
        }
        engine = self._engine
        if generation and engine is not None:
            engine.set_generation(generation)
        periods = {
            p.name: p.value
            for p in changed
            if p.name in ('ros.status_period_s', 'ros.frames_period_s')
        }
        if periods:
            self._make_timers(periods)

    def _publish_status(self) -> None:
        engine = self._engine
        try:
            self._warn_twins()
            status = engine.status() if engine is not None else None
            stamp = self.get_clock().now().to_msg()
            self._status_pub.publish(to_status_msg(status, self._state, stamp))
            self._diag_pub.publish(
                diagnostic_array(
                    self.get_name(), status, self._state, self._problem, self._diag, stamp
                )
            )
        except Exception as exc:
            self._warn('status', f'status not published: {type(exc).__name__}: {exc}')

    def _warn_twins(self) -> None:
        """Warn (throttled) while another node has this name and namespace: ROS allows it."""
        me = (self.get_name(), self.get_namespace())
        twins = self.get_node_names_and_namespaces().count(me) - 1
        if twins > 0:
            self._warn(
                'duplicate',
                f'{twins} other node(s) named {self.get_fully_qualified_name()} are running: '
                'questions may be answered by either; give each a unique name or namespace',
            )

    def _publish_frames(self) -> None:
        engine = self._engine
        if engine is None or self._frames_pub.get_subscription_count() == 0:
            return
        try:
            grid = montage(engine.key_frames())  # (H, W, 3) RGB
        except Exception as exc:
            self._warn('frames', f'memory frames not published: {type(exc).__name__}: {exc}')
            return
        msg = Image(
            height=grid.shape[0], width=grid.shape[1], encoding='rgb8', step=grid.shape[1] * 3
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.data = grid.tobytes()
        self._frames_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """``flash_vstream_node``: run the node until SIGINT/SIGTERM; exit code 0 on a clean stop.

    rclpy's own signal handlers would shut the context down at once; instead SIGINT and SIGTERM
    interrupt the executor, the node stops the engine (saving when configured, logging through
    the still valid context), and only then is ROS shut down.
    """
    init_without_signal_handlers(args)
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (`cmd &`)
        signal.signal(sig, _interrupt)
    node: FlashVStreamNode | None = None
    executor: MultiThreadedExecutor | None = None
    try:
        node = FlashVStreamNode()
        # Questions waiting in the engine's queue each hold a thread: keep some for the rest.
        waiting = int(node.get_parameter('engine.question_queue_size').value)
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS + waiting)
        executor.add_node(node)
        if node.get_parameter('ros.autostart').value:
            node.start()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # one clean stop; SIGKILL still works
            signal.signal(sig, signal.SIG_IGN)
        if node is not None:
            node.close()
        if executor is not None and not executor.shutdown(timeout_sec=SHUTDOWN_TIMEOUT_S):
            rclpy.logging.get_logger('flash_vstream').warning(
                f'callbacks still running {SHUTDOWN_TIMEOUT_S:g} s after the engine stopped'
            )
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _release_memory() -> None:
    """Collect what a dropped engine held and hand cached CUDA blocks back to the driver."""
    gc.collect()
    torch = sys.modules.get('torch')
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


if __name__ == '__main__':
    sys.exit(main())
