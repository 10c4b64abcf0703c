"""The consume loop, composed of named parts behind typed ports.

- :mod:`stream.loop.ports` — what the loop needs of a consumer, a producer and a state store;
  :mod:`stream.kafka.kafka_python` (kafka-python) and :mod:`stream.kafka.confluent` implement them;
- :mod:`stream.loop.runner` — :class:`~stream.loop.runner.Runner`: poll, judge, deliver,
  checkpoint when due;
- :mod:`stream.loop.delivery` — send, settle, retry, refused outputs, the shutdown grace;
- :mod:`stream.loop.checkpoint` — the schedule, the at-least-once order (one method, numbered
  steps), the labels companion partition;
- :mod:`stream.loop.restore` — rebalances: revoke, assign, pause, restore from snapshots;
- :mod:`stream.loop.reporting` — the engine's counts into the metrics, missing input topics.
"""
