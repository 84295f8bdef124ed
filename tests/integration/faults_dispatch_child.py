"""Child of test_faults_webhooks: runs the webhook dispatcher on the database named by
PERSONA_DATABASE_URL until it is killed (or, with `drain`, until nothing is pending)."""

from __future__ import annotations

import sys
import threading

import sqlalchemy as sa

from persona_core.settings import Settings
from persona_core.store import tables as t
from persona_core.store.engine import Database
from persona_core.webhooks import Dispatcher


def main() -> None:
    settings = Settings(
        webhook_allow_private=True, webhook_retry_base_s=0.05, webhook_retry_max_s=0.3,
        webhook_poll_s=0.02, webhook_lease_ttl_s=0.5, webhook_max_attempts=1000,
        webhook_disable_after=100_000,
    )
    db = Database.connect(settings.resolved_database_url)
    dispatcher = Dispatcher(db, settings)
    print("GO", flush=True)
    if sys.argv[1:] == ["drain"]:
        while True:
            dispatcher.run_once()
            with db.tx(write=False) as conn:
                pending = conn.execute(
                    sa.select(sa.func.count()).select_from(t.webhook_deliveries)
                    .where(t.webhook_deliveries.c.state == "pending")
                ).scalar_one()
                cursor = conn.execute(sa.select(sa.func.min(t.webhook_subscriptions.c.cursor))).scalar_one()
                last = conn.execute(sa.select(sa.func.max(t.events.c.id))).scalar_one()
            if pending == 0 and cursor == last:
                print("DONE", flush=True)
                return
            threading.Event().wait(0.02)
    dispatcher.run(threading.Event())


if __name__ == "__main__":
    main()
