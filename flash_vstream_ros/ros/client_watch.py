"""Noticing that the client of an ``~/ask_stream`` goal is gone (its process exited or died).

Without this, a goal whose client was killed keeps the model until its token limit, and every
question behind it waits. rclpy's action server does not say who sent a goal, and there is no
graph query for action clients as such. What the graph does show: every ActionClient (rclpy,
rclcpp, the ``ros2 action`` CLI) subscribes to the action's feedback topic when it is created,
before it can send a goal. So the sender of a running goal is one of the feedback subscribers
the graph lists, and :class:`ClientWatch` works on their endpoint GIDs:

* it records the subscribers seen when the goal starts (the first look that sees any: the
  discovery of a brand-new client may lag behind its goal);
* it declares the client gone once none of the recorded subscribers is left. A subscriber
  that appeared later cannot have sent the goal, and while any recorded one remains the
  sender may be alive, so a living client's goal is never stopped. The price: with several
  clients at once, one that dies is noticed only when all that were there at its start are
  gone.

How soon: a client that shuts down (destroys its node, Ctrl-C) leaves the graph at once; a
killed process leaves it when DDS lets its participant's lease expire: 20 s with Fast DDS'
defaults (a client whose profile sets a shorter ``leaseDuration`` is noticed sooner), then
within one ``period_s``. The watch polls in its own thread so that it also covers a goal
still waiting for the model, and a query never runs on the generating thread.
"""

from __future__ import annotations

from collections.abc import Callable
import threading

from rclpy.node import Node

WATCH_PERIOD_S = 0.5  # how often the graph is looked at while a goal runs
JOIN_S = 2.0  # longest wait for the watch thread when the goal ends


def feedback_topic(node: Node, action_name: str) -> str:
    """The feedback topic of ``node``'s action (rcl_action's ``<name>/_action/feedback``)."""
    return node.resolve_topic_name(action_name) + '/_action/feedback'


class ClientWatch:
    """Calls ``on_gone`` once when every feedback subscriber seen at the start has gone."""

    def __init__(
        self,
        node: Node,
        topic: str,
        on_gone: Callable[[], None],
        period_s: float = WATCH_PERIOD_S,
    ) -> None:
        self._node = node
        self._topic = topic
        self._on_gone = on_gone
        self._period_s = period_s
        self._done = threading.Event()
        self.gone = False
        self._thread = threading.Thread(target=self._run, name='ask_stream-client-watch')
        self._thread.daemon = True

    def __enter__(self) -> ClientWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(JOIN_S)

    def _subscribers(self) -> frozenset[bytes]:
        infos = self._node.get_subscriptions_info_by_topic(self._topic)
        return frozenset(bytes(info.endpoint_gid) for info in infos)

    def _run(self) -> None:
        try:
            known = self._subscribers()
            while not self._done.wait(self._period_s):
                now = self._subscribers()
                if not known:
                    known = now
                elif not known & now:
                    self.gone = True
                    self._on_gone()
                    return
        except Exception as exc:  # a graph query failing (node going away) ends the watch only
            self._node.get_logger().debug(f'client watch stopped: {type(exc).__name__}: {exc}')
