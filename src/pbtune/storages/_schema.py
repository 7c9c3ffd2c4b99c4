"""Tables of the pbtune schema (SQLAlchemy Core). Params and metrics are JSON columns."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from pbtune._errors import StorageError

# 2: trials may be TRAINED or EVALUATING (studies with an evaluate function).
# 3: a trial's id, as users see it, is its number in its study (0, 1, 2, ...), so
#    `parent_id` and `latest_complete_id` hold numbers; trials may be LOST.
# 4: a study keeps why it ended early (`stop_reason`) and its stop rules' bookkeeping
#    (`stop_state`); a member counts its results in a row at the bottom (`lagging`).
# 5: a trial whose checkpoint was found missing or damaged keeps where it was
#    (`checkpoint_gone`); its `checkpoint` is then None, so nothing warm-starts from it.
#    A queued retry waits for its backoff (`not_before`).
# An older database is moved to 5 when opened (see `upgrade`); an older pbtune then
# refuses it with a clear message instead of reading numbers as row keys or failing on a
# state it does not know.
SCHEMA_VERSION = 5
UPGRADABLE_VERSIONS = ("1", "2", "3", "4")
# The PostgreSQL advisory lock (one per database) that openers hold while they create,
# check or upgrade the tables: a fixed number, "pbtune" in ASCII.
SCHEMA_LOCK = 0x706274756E65

metadata = MetaData()

meta = Table(
    "pbtune_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

studies = Table(
    "pbtune_studies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(512), nullable=False, unique=True),
    Column("config", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("checkpoint_dir", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    # Why the study ended before its budget (a stop rule, `Study.stop`); None otherwise.
    Column("stop_reason", Text, nullable=True),
    # What the study's stop rules keep between results (JSON; see `pbtune.StopRule`).
    Column("stop_state", JSON, nullable=True),
)

members = Table(
    "pbtune_members",
    metadata,
    Column("study_id", Integer, ForeignKey("pbtune_studies.id"), primary_key=True),
    Column("member", Integer, primary_key=True),
    # The number of the member's latest COMPLETE trial: the population snapshot is one row
    # per member.
    Column("latest_complete_id", Integer, nullable=True),
    # Failures since the member's last COMPLETE trial (bounded by max_retries).
    Column("failures", Integer, nullable=False, default=0),
    Column("state", String(16), nullable=False),
    # Results in a row that ranked in the bottom of the population (`pbtune.Lagging`).
    Column("lagging", Integer, nullable=False, default=0),
)

trials = Table(
    "pbtune_trials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", Integer, ForeignKey("pbtune_studies.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("member", Integer, nullable=False),
    Column("generation", Integer, nullable=False),
    # The row key `id` stays inside the storage (reports refer to it); everything else
    # names a trial by its `number` in the study, which is the id users see.
    Column("parent_id", Integer, nullable=True),  # the parent's number in this study
    Column("params", JSON, nullable=False),
    Column("start_step", Integer, nullable=False),
    Column("end_step", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("metrics", JSON, nullable=True),
    Column("fitness", Float, nullable=True),
    Column("checkpoint", Text, nullable=True),
    # The checkpoint this trial had when it was found missing or damaged (deleted from
    # outside pbtune): recorded once, never opened again; None for every other trial.
    Column("checkpoint_gone", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("worker", String(256), nullable=True),
    Column("claim", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    # A QUEUED retry is not claimed before this time (its backoff); None: at once.
    Column("not_before", Float, nullable=True),
    Index("ix_pbtune_trials_number", "study_id", "number", unique=True),
    # ask: the QUEUED (or TRAINED) trial with the smallest end_step; also held/stale scans.
    Index("ix_pbtune_trials_queue", "study_id", "state", "end_step", "number"),
    Index("ix_pbtune_trials_checkpoint", "study_id", "checkpoint"),
    Index("ix_pbtune_trials_fitness", "study_id", "state", "fitness"),
    Index("ix_pbtune_trials_member", "study_id", "member", "number"),
)

reports = Table(
    "pbtune_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("pbtune_trials.id"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Index("ix_pbtune_reports_trial", "trial_id", "step"),
)


def upgrade(connection: Connection, version: str) -> None:
    """Move a database written at schema ``version`` (1 to 4) to `SCHEMA_VERSION`."""
    if version in ("1", "2"):
        _number_references(connection)
    added: list[tuple[Table, str, str | None]] = []
    if version in ("1", "2", "3"):
        added += [(studies, "stop_reason", None), (studies, "stop_state", None),
                  (members, "lagging", "0")]
    added += [(trials, "checkpoint_gone", None), (trials, "not_before", None)]  # 5
    for table, column, default in added:
        _add_column(connection, table, column, default)
    connection.execute(
        update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
    )


def _add_column(connection: Connection, table: Table, name: str, default: str | None
                ) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for the column ``name`` of ``table`` as declared."""
    column = table.c[name]
    kind = column.type.compile(dialect=connection.dialect)
    rest = "" if default is None else f" NOT NULL DEFAULT {default}"
    connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}{rest}"))


def _number_references(connection: Connection) -> None:
    """Schema 1 and 2 to 3: trial references that held row keys now hold numbers in the
    study, and the trials of lost workers are LOST."""
    parent = trials.alias("parent")
    connection.execute(
        update(trials)
        .where(trials.c.parent_id.is_not(None))
        .values(parent_id=select(parent.c.number)
                .where(parent.c.id == trials.c.parent_id).scalar_subquery())
    )
    connection.execute(
        update(members)
        .where(members.c.latest_complete_id.is_not(None))
        .values(latest_complete_id=select(trials.c.number)
                .where(trials.c.id == members.c.latest_complete_id).scalar_subquery())
    )
    # Trials failed on behalf of a lost worker were FAILED with an error that says so.
    connection.execute(
        update(trials)
        .where(trials.c.state == "FAILED", trials.c.error.like("lost:%"))
        .values(state="LOST")
    )


def create_or_check(connection: Connection, shown: str) -> None:
    """Create the tables in an empty database, upgrade an older pbtune's (`upgrade`), or
    refuse a database this pbtune cannot read; ``shown`` names the storage in errors.

    Processes that open a new database at the same instant take turns: SQLite's write
    transaction (BEGIN IMMEDIATE) is exclusive already, and on PostgreSQL an advisory lock
    held to the end of the transaction makes every other opener wait until the first has
    committed its tables; each then looks (at the committed tables) before creating.
    The transaction reads at READ COMMITTED whatever the server's default, so that its
    look after the wait sees what was committed during it.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"))
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
    names = set(inspect(connection).get_table_names())
    if meta.name not in names:
        if names & {t.name for t in metadata.sorted_tables}:
            raise StorageError(
                f"storage {shown} holds pbtune tables without a schema version; "
                "it was not made by this pbtune. Use a new database."
            )
        metadata.create_all(connection)
        connection.execute(
            insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION))
        )
        return
    version = connection.execute(
        select(meta.c.value).where(meta.c.key == "schema_version")
    ).scalar_one_or_none()
    if version in UPGRADABLE_VERSIONS:
        upgrade(connection, version)
    elif version != str(SCHEMA_VERSION):
        raise StorageError(
            f"storage {shown} has pbtune schema version {version!r}; this pbtune reads "
            f"version {SCHEMA_VERSION}. Use the pbtune release that wrote it, or a new "
            "database; pbtune will not change it."
        )
