"""The decisions of the stream worker as pure functions over samples: no Kafka, no database, no clock.

Each module answers one question about one kind of signal; `streams.engine` turns the answers into cases.
All times are epoch milliseconds of event time (when the device measured), so a replay decides the same.
"""
