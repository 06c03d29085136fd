"""The bus: NATS JetStream connection, provisioning, publishing, consuming, replay, KV, and an
embedded server. Services and users' own programs import from here."""

from bus.connection import NatsSettings, connect, jetstream
from bus.consumer import BusMessage, PullConsumer
from bus.kv import Bucket, CasConflict
from bus.publisher import Publisher, PublishError
from bus.replay import last_message, last_per_subject, replay, start_seq_for_last
from bus.streams import ensure_streams

__all__ = [
    "Bucket",
    "BusMessage",
    "CasConflict",
    "NatsSettings",
    "PublishError",
    "Publisher",
    "PullConsumer",
    "connect",
    "ensure_streams",
    "jetstream",
    "last_message",
    "last_per_subject",
    "replay",
    "start_seq_for_last",
]
