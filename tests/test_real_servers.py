"""The real servers the replica tests share state through start and answer."""

from __future__ import annotations

import redis
import sqlalchemy

from tests.real_servers import postgres_url, redis_url

__all__ = ["postgres_url", "redis_url"]


def test_postgres_answers_a_query(postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("select 40 + 2")).scalar() == 42
    engine.dispose()


def test_redis_counts(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.incr("dsdeploy-test") == 1
    client.close()
