"""Flask extensions and the Redis/RQ accessors, created once and bound by the app factories."""

import select

import redis
import sqlalchemy as sa
import rq
from flask import current_app
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.pagination import QueryPagination
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool

# Named constraints keep Alembic migrations portable between SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
login_manager = LoginManager()
csrf = CSRFProtect()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """Web, workers and scheduler share the SQLite file: WAL and a busy timeout let them."""
    if type(dbapi_connection).__module__ == "sqlite3":
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


@event.listens_for(Pool, "checkout")
def _replace_connections_the_server_closed(dbapi_connection, connection_record, connection_proxy):
    """A pooled PostgreSQL connection that the server has closed (a restart, a terminated
    session) is replaced before a request uses it: DisconnectionError makes the pool open a new one.

    This polls the socket instead of sending `SELECT 1` before every request as pool_pre_ping
    does, which took a tenth of the status fragment's throughput. An idle connection has nothing
    to read; one the server closed reads as end of file.
    """
    if not hasattr(dbapi_connection, "pgconn"):
        return  # SQLite: a file, not a connection that can be closed under us
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the connection is closed")
    poll = select.poll()
    poll.register(dbapi_connection.fileno(), select.POLLIN)
    if poll.poll(0):
        raise DisconnectionError("the server closed the connection")


def get_redis():
    """One Redis client per app, from REDIS_URL."""
    client = current_app.extensions.get("cairn_redis")
    if client is None:
        client = redis.Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=3,
                                      socket_timeout=10)
        current_app.extensions["cairn_redis"] = client
    return client


def get_queue():
    """The RQ queue all Cairn jobs go through."""
    return rq.Queue(current_app.config["RQ_QUEUE"], connection=get_redis())


def get_notification_queue():
    """Deliveries have their own queue and worker, so a slow receiver never holds up a backup."""
    return rq.Queue(f"{current_app.config['RQ_QUEUE']}-notifications", connection=get_redis())


class LeanPagination(QueryPagination):
    """Flask-SQLAlchemy's pagination, counting with `SELECT count(<primary key>) FROM … WHERE …`
    rather than around a subquery of every column: the same answer, without asking for rows."""

    def _query_count(self):
        query = self._query_args["query"]
        key = sa.inspect(query.column_descriptions[0]["entity"]).primary_key[0]
        return query.order_by(None).with_entities(db.func.count(key)).scalar()


def paginate(query, page, per_page):
    """One page of a single-entity query (past the last page: an empty one)."""
    return LeanPagination(query=query, page=page, per_page=per_page, error_out=False)
