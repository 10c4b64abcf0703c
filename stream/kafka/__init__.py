"""Kafka on the outside of the engine: the two client backends behind the loop's ports, the
embedded broker, and readers of Vigil's own output topics."""
