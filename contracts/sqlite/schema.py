"""The embedded store's schema, versioned through ``PRAGMA user_version``.

Migrations only ever append: version N's script moves a database from N-1 to N, inside the
same immediate transaction that checks the version, so two processes opening a new file at
once cannot both migrate it.

Conversation order is (arrival, seq): a message scheduled for later has not "arrived" yet, so
it does not hold up messages sent before its time; a retried message keeps its place.

Why a ``conversations`` row carries its head: the claim must pick, across all conversations,
the best *due head* message without a scan window. Keeping each conversation's head (its one
processing message, else its earliest queued one) denormalised next to an ordered index makes
that an index walk that only skips conversations that are busy or waiting.

Indexes are few on purpose: every index a claim or complete touches is another page written
per commit. Views that run rarely (stats, the demand snapshot, the sweep) walk the partial
``conversations_claim`` index of open conversations instead of keeping their own.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: the queue, conversations, workers, agents, secrets, history, locks, launch ledger.
    """
    CREATE TABLE messages (
        seq                 INTEGER PRIMARY KEY,                 -- enqueue order
        message_id          TEXT NOT NULL UNIQUE,
        conversation_id     TEXT NOT NULL,
        agent_key           TEXT NOT NULL,
        payload             TEXT NOT NULL,                       -- wire JSON of MessagePayload
        external_message_id TEXT,
        status              TEXT NOT NULL
            CHECK (status IN ('queued', 'processing', 'done', 'dead_letter')),
        priority            INTEGER NOT NULL,
        scheduled_for       INTEGER NOT NULL,    -- next delivery time (moves on retry)
        arrival_at          INTEGER NOT NULL,    -- max(first scheduledFor, enqueue time): FIFO key
        enqueued_at         INTEGER NOT NULL,
        attempts            INTEGER NOT NULL DEFAULT 0,
        max_attempts        INTEGER NOT NULL,
        lease_id            TEXT,        -- current lease; kept after settling so a replay is recognised
        lease_expires_at    INTEGER,
        claimed_by          TEXT,
        last_error          TEXT,
        finished_at         INTEGER
    );
    CREATE UNIQUE INDEX messages_dedupe ON messages (conversation_id, external_message_id)
        WHERE external_message_id IS NOT NULL;
    CREATE INDEX messages_open ON messages (conversation_id, arrival_at, seq)
        WHERE status IN ('queued', 'processing');
    CREATE INDEX messages_dead ON messages (finished_at) WHERE status = 'dead_letter';

    CREATE TABLE conversations (
        conversation_id     TEXT PRIMARY KEY,
        agent_key           TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        head_seq            INTEGER,      -- NULL: nothing open in this conversation
        head_status         TEXT,
        head_priority       INTEGER,
        head_scheduled_for  INTEGER,
        head_attempts       INTEGER,
        available_at        INTEGER,      -- queued head: scheduled_for; processing head: lease expiry
        lock_worker         TEXT,         -- the worker holding the processing head
        history_count       INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX conversations_claim
        ON conversations (head_priority DESC, head_scheduled_for, head_seq)
        WHERE head_seq IS NOT NULL;

    CREATE TABLE history (
        conversation_id   TEXT NOT NULL,
        idx               INTEGER NOT NULL,
        role              TEXT NOT NULL,
        content           TEXT NOT NULL,
        at                INTEGER NOT NULL,
        source_message_id TEXT,
        PRIMARY KEY (conversation_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX history_source ON history (source_message_id) WHERE source_message_id IS NOT NULL;

    CREATE TABLE workers (
        worker_id         TEXT PRIMARY KEY,
        provider          TEXT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('active', 'draining', 'stopping', 'stopped')),
        status_reason     TEXT,
        status_since      INTEGER,
        machine_ref       TEXT,
        launch_id         TEXT,
        capabilities      TEXT NOT NULL DEFAULT '[]',
        registered_at     INTEGER NOT NULL,
        heartbeat_at      INTEGER NOT NULL,
        last_claim_at     INTEGER,
        busy_since        INTEGER,
        idle_since        INTEGER,
        conversation_id   TEXT
    ) WITHOUT ROWID;

    CREATE TABLE agent_profiles (
        agent_key         TEXT PRIMARY KEY,
        profile           TEXT NOT NULL,       -- wire JSON of AgentProfile
        enabled           INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE secrets (
        secret_ref        TEXT NOT NULL,
        version           INTEGER NOT NULL,
        value             TEXT NOT NULL,
        active            INTEGER NOT NULL,
        created_at        INTEGER NOT NULL,
        PRIMARY KEY (secret_ref, version)
    ) WITHOUT ROWID;

    CREATE TABLE locks (
        name              TEXT PRIMARY KEY,
        holder            TEXT NOT NULL,
        expires_at        INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE launches (
        launch_id         TEXT PRIMARY KEY,
        provider          TEXT NOT NULL,
        requested_at      INTEGER NOT NULL,
        state             TEXT NOT NULL CHECK (state IN ('requested', 'running', 'gone', 'failed')),
        machine_id        TEXT,
        updated_at        INTEGER,
        detail            TEXT
    ) WITHOUT ROWID;

    INSERT INTO agent_profiles (agent_key, profile, enabled, updated_at) VALUES (
        'default',
        '{"agentKey":"default","version":"1.0.0","enabled":true,'
        || '"secretsRef":["telegram.botToken.default"],"openclawAgentId":"main"}',
        1, 0
    );
    """,
    # 2: the store's own settings. The lease TTL lives here, so every process sharing the file
    # hands out leases of one length, whatever its own environment says.
    """
    CREATE TABLE store_config (
        key               TEXT PRIMARY KEY,
        value             TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO store_config (key, value) VALUES ('lease_ttl_ms', '60000');
    """,
    # 3: push templates and jobs, the dispatch record of every slot, broadcasts and their audit.
    """
    CREATE TABLE push_templates (
        template_id       TEXT PRIMARY KEY,
        body              TEXT NOT NULL,       -- wire JSON of PushTemplate
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE push_jobs (
        job_id            TEXT PRIMARY KEY,
        template_id       TEXT NOT NULL REFERENCES push_templates (template_id),
        body              TEXT NOT NULL,       -- wire JSON of PushJob
        enabled           INTEGER NOT NULL,
        next_run_at       INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX push_jobs_due ON push_jobs (next_run_at) WHERE enabled = 1 AND next_run_at IS NOT NULL;

    CREATE TABLE push_dispatches (
        job_id            TEXT NOT NULL,
        run_key           TEXT NOT NULL,       -- job:<jobId>:<slotMs> or manual:<jobId>:<ms>
        slot_at           INTEGER NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('enqueued', 'skipped', 'failed')),
        message_id        TEXT,
        error             TEXT,
        created_at        INTEGER NOT NULL,
        PRIMARY KEY (job_id, run_key)
    ) WITHOUT ROWID;

    CREATE TABLE broadcasts (
        broadcast_id      TEXT PRIMARY KEY,
        requested_by      TEXT NOT NULL,
        requested_at      INTEGER NOT NULL,
        text_sha256       TEXT NOT NULL,
        agents            TEXT,                -- JSON list, or NULL for every enabled agent
        status            TEXT NOT NULL CHECK (status IN ('done', 'failed'))
    ) WITHOUT ROWID;

    CREATE TABLE broadcast_recipients (
        broadcast_id      TEXT NOT NULL,
        conversation_id   TEXT NOT NULL,
        agent_key         TEXT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('enqueued', 'skipped', 'failed')),
        message_id        TEXT,
        error             TEXT,
        PRIMARY KEY (broadcast_id, conversation_id)
    ) WITHOUT ROWID;
    """,
    # 4: the front door. Secrets become ciphertext with the id of the key that sealed them (NULL: a
    # value stored before encryption, sealed when the store is next opened with a key); Telegram
    # update ids seen (dedupe that survives restarts), webhooks, pairing codes and their failed
    # attempts, identity bindings, and the app API's bearer tokens (hashes only).
    """
    ALTER TABLE secrets ADD COLUMN key_id TEXT;

    CREATE TABLE telegram_updates (
        bot_id            TEXT NOT NULL,
        update_id         INTEGER NOT NULL,
        message_id        TEXT,
        received_at       INTEGER NOT NULL,
        PRIMARY KEY (bot_id, update_id)
    ) WITHOUT ROWID;
    CREATE INDEX telegram_updates_age ON telegram_updates (received_at);

    CREATE TABLE telegram_webhooks (
        agent_key         TEXT PRIMARY KEY,
        bot_id            TEXT NOT NULL,
        secret_hash       TEXT NOT NULL UNIQUE,
        bot_username      TEXT,
        url               TEXT,
        configured_at     INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE pairing_codes (
        code              TEXT PRIMARY KEY,
        agent_key         TEXT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('pending', 'used', 'expired')),
        created_at        INTEGER NOT NULL,
        expires_at        INTEGER NOT NULL,
        consumer_user_id  TEXT,
        used_at           INTEGER,
        telegram_user_id  TEXT,
        telegram_chat_id  TEXT
    ) WITHOUT ROWID;

    CREATE TABLE pairing_failures (
        bot_id            TEXT NOT NULL,
        telegram_user_id  TEXT NOT NULL,
        window_started_at INTEGER NOT NULL,
        failures          INTEGER NOT NULL,
        PRIMARY KEY (bot_id, telegram_user_id)
    ) WITHOUT ROWID;

    CREATE TABLE identity_bindings (
        binding_id        TEXT PRIMARY KEY,
        agent_key         TEXT NOT NULL,
        bot_id            TEXT NOT NULL,
        telegram_user_id  TEXT NOT NULL,
        telegram_chat_id  TEXT,
        consumer_user_id  TEXT,
        conversation_id   TEXT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        source            TEXT NOT NULL,
        bound_at          INTEGER NOT NULL,
        revoked_at        INTEGER
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX identity_bindings_active ON identity_bindings (bot_id, telegram_user_id)
        WHERE status = 'active';

    CREATE TABLE app_tokens (
        token_id          TEXT PRIMARY KEY,
        name              TEXT NOT NULL,
        token_hash        TEXT NOT NULL UNIQUE,
        created_at        INTEGER NOT NULL,
        revoked_at        INTEGER
    ) WITHOUT ROWID;
    """,
    # 5: the warm pool and keep-warm. Launches may be 'parked' (a stopped machine kept to be
    # started again; SQLite cannot change a CHECK, so the table is rebuilt), and a conversation
    # keeps when a message last arrived and the gaps before it (JSON, newest first).
    """
    CREATE TABLE launches_v5 (
        launch_id         TEXT PRIMARY KEY,
        provider          TEXT NOT NULL,
        requested_at      INTEGER NOT NULL,
        state             TEXT NOT NULL CHECK (state IN ('requested', 'running', 'parked', 'gone', 'failed')),
        machine_id        TEXT,
        updated_at        INTEGER,
        detail            TEXT
    ) WITHOUT ROWID;
    INSERT INTO launches_v5 (launch_id, provider, requested_at, state, machine_id, updated_at, detail)
        SELECT launch_id, provider, requested_at, state, machine_id, updated_at, detail FROM launches;
    DROP TABLE launches;
    ALTER TABLE launches_v5 RENAME TO launches;
    ALTER TABLE conversations ADD COLUMN last_arrival_at INTEGER;
    ALTER TABLE conversations ADD COLUMN arrival_gaps TEXT;
    CREATE INDEX conversations_recent ON conversations (last_arrival_at) WHERE last_arrival_at IS NOT NULL;
    """,
    # 6: the hot path. A complete that claims the worker's next job records it on the completed
    # message (chained_seq), so a replayed complete hands back that job instead of claiming another.
    # Open messages are indexed while finished_at is NULL, which holds exactly while queued or
    # processing: a claim changes a status, not its openness, and leaves that index alone. Claims
    # order due heads by when they became claimable (available_at), so the claim index says so.
    """
    ALTER TABLE messages ADD COLUMN chained_seq INTEGER;
    DROP INDEX messages_open;
    CREATE INDEX messages_open ON messages (conversation_id, arrival_at, seq) WHERE finished_at IS NULL;
    DROP INDEX conversations_claim;
    CREATE INDEX conversations_claim
        ON conversations (head_priority DESC, available_at, head_seq)
        WHERE head_seq IS NOT NULL;
    """,
    # 7: the operator console. Operator tokens and console sessions (hashes only); the latest
    # reconcile tick; who started each conversation (its first message's provider user, filled in
    # for conversations that already exist) so conversations can be found by user, agent or age;
    # done messages by finish time, for throughput and enqueue→reply latency over the last hour
    # (one index entry per completed message; dead letters already have theirs); a conversation's
    # messages in order (the console's and the app API's conversation reads were a table scan; one
    # index entry per enqueue, untouched by claims and settles); pairing codes by age.
    """
    CREATE TABLE operator_tokens (
        token_id          TEXT PRIMARY KEY,
        name              TEXT NOT NULL,
        role              TEXT NOT NULL CHECK (role IN ('admin', 'read_only')),
        token_hash        TEXT NOT NULL UNIQUE,
        created_at        INTEGER NOT NULL,
        revoked_at        INTEGER
    ) WITHOUT ROWID;

    CREATE TABLE console_sessions (
        session_hash      TEXT PRIMARY KEY,
        operator          TEXT NOT NULL,
        role              TEXT NOT NULL CHECK (role IN ('admin', 'read_only')),
        token_id          TEXT,
        created_at        INTEGER NOT NULL,
        expires_at        INTEGER NOT NULL,
        ended_at          INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

    CREATE TABLE reconcile_last (
        slot              INTEGER PRIMARY KEY CHECK (slot = 1),
        body              TEXT NOT NULL          -- wire JSON of ReconcileRecord
    );

    ALTER TABLE conversations ADD COLUMN user_id TEXT;
    UPDATE conversations SET user_id = first.user_id
    FROM (
        SELECT conversation_id, json_extract(payload, '$.providerUserId') AS user_id, min(seq)
        FROM messages GROUP BY conversation_id
    ) AS first
    WHERE first.conversation_id = conversations.conversation_id;
    CREATE INDEX conversations_created ON conversations (created_at);
    CREATE INDEX conversations_agent ON conversations (agent_key, created_at);
    CREATE INDEX conversations_user ON conversations (user_id, created_at) WHERE user_id IS NOT NULL;

    CREATE INDEX messages_done ON messages (finished_at) WHERE status = 'done';
    CREATE INDEX messages_conversation ON messages (conversation_id, seq);
    CREATE INDEX pairing_codes_created ON pairing_codes (created_at);
    """,
    # 8: snapshots of agents' OpenClaw state (archives live in a folder beside the database,
    # named by their sha256), and the conversation a launch and its worker are pinned to.
    """
    CREATE TABLE snapshots (
        snapshot_id       TEXT PRIMARY KEY,
        workspace_id      TEXT NOT NULL,
        agent_key         TEXT NOT NULL,
        conversation_id   TEXT NOT NULL,
        worker_id         TEXT NOT NULL,
        reason            TEXT NOT NULL CHECK (reason IN ('drain', 'signal', 'idle', 'manual')),
        status            TEXT NOT NULL CHECK (status IN ('uploading', 'ready', 'failed', 'expired')),
        format_version    INTEGER NOT NULL,
        created_at        INTEGER NOT NULL,
        completed_at      INTEGER,
        storage_id        TEXT,                -- the archive's sha256: its file name
        sha256            TEXT,
        size_bytes        INTEGER,
        error             TEXT
    );
    CREATE INDEX snapshots_conversation ON snapshots (workspace_id, agent_key, conversation_id, created_at);
    CREATE INDEX snapshots_uploading ON snapshots (worker_id) WHERE status = 'uploading';
    ALTER TABLE launches ADD COLUMN conversation_id TEXT;
    ALTER TABLE workers ADD COLUMN pinned_conversation_id TEXT;
    """,
    # 9: the per-account runtime (Mission Control): accounts with their hashed service token and
    # runtime status, their agents, tasks, notifications and the messages agents post on tasks.
    """
    CREATE TABLE rt_accounts (
        account_id        TEXT PRIMARY KEY,
        name              TEXT NOT NULL,
        active            INTEGER NOT NULL DEFAULT 1,
        token_hash        TEXT,
        status            TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'degraded', 'offline')),
        details           TEXT NOT NULL DEFAULT '{}',   -- wire JSON of RuntimeDetails
        created_at        INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE rt_agents (
        agent_id          TEXT PRIMARY KEY,
        account_id        TEXT NOT NULL REFERENCES rt_accounts (account_id),
        slug              TEXT NOT NULL,
        body              TEXT NOT NULL,                -- wire JSON of RuntimeAgent
        heartbeat_status  TEXT,
        last_heartbeat_at INTEGER,
        UNIQUE (account_id, slug)
    ) WITHOUT ROWID;

    CREATE TABLE rt_tasks (
        task_id           TEXT PRIMARY KEY,
        account_id        TEXT NOT NULL REFERENCES rt_accounts (account_id),
        body              TEXT NOT NULL                 -- wire JSON of Task
    ) WITHOUT ROWID;

    CREATE TABLE rt_notifications (
        seq               INTEGER PRIMARY KEY,
        notification_id   TEXT NOT NULL UNIQUE,
        account_id        TEXT NOT NULL REFERENCES rt_accounts (account_id),
        agent_id          TEXT NOT NULL,
        body              TEXT NOT NULL,                -- wire JSON of Notification
        delivered_at      INTEGER
    );
    CREATE INDEX rt_notifications_undelivered ON rt_notifications (account_id, seq) WHERE delivered_at IS NULL;

    CREATE TABLE rt_agent_messages (
        seq               INTEGER PRIMARY KEY,
        message_id        TEXT NOT NULL UNIQUE,
        account_id        TEXT NOT NULL,
        task_id           TEXT NOT NULL,
        body              TEXT NOT NULL                 -- wire JSON of AgentMessage
    );
    CREATE INDEX rt_agent_messages_account ON rt_agent_messages (account_id, seq);
    """,
    # 10: the last lease of a message that expired rather than ended (taken over or swept), so its
    # worker, giving it back late after a store outage, gets the attempt back (queue.release).
    """
    ALTER TABLE messages ADD COLUMN superseded_lease_id TEXT;
    """,
    # 11: the workers pinned to a conversation, for the claim's hold (contracts.rules.HOLD_MS) and
    # the boot bundle. Partial, and without the heartbeat: written only when a worker is pinned.
    """
    CREATE INDEX workers_pinned ON workers (pinned_conversation_id) WHERE pinned_conversation_id IS NOT NULL;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
# "FACT" in the file header's application id: this file is a factory store (sqlite.org/fileformat2).
APPLICATION_ID = 0x46414354
# Tables every version has: a file without an application id (made before we set it) that has
# these and a schema version is one of ours.
CORE_TABLES = frozenset({"messages", "conversations", "workers", "agent_profiles"})


class SchemaTooNew(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(
            f"the store file has schema version {found}, newer than this factory ({SCHEMA_VERSION}); "
            "upgrade factory rather than opening it with an older release"
        )
        self.found = found


class NotOurs(Exception):
    """A SQLite database that is not a factory store: we must not add tables or change its journal."""


def check_ours(conn: sqlite3.Connection) -> None:
    """Refuse a database another program made, or a newer release's store, before touching it.

    Read-only: runs before the journal switch and the migration, so a foreign file stays as it was.
    """
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id == APPLICATION_ID or (app_id == 0 and version == 0 and not tables):
        pass  # ours, or a new empty file
    elif app_id == 0 and version > 0 and tables >= CORE_TABLES:
        pass  # ours, from before the application id was set; the migration sets it
    else:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise NotOurs(
            f"is a SQLite database another program made (application id {app_id:#x}, "
            f"tables: {shown or 'none'}); point the store at a new file or a factory store"
        )
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(version)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version found before migrating."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _statements(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        if int(conn.execute("PRAGMA application_id").fetchone()[0]) != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our immediate transaction; split on complete statements instead.
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                out.append(pending.strip())
            pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out
