"""The real-time path: ingestion service -> Redis Streams -> consumer (raw tables, online store) -> serving."""
