"""The ``application_name`` tags connbench gives the PostgreSQL sessions it opens or starts.

One place each: the sampler counts the apps' sessions by :data:`APP_NAME` and leaves out
connbench's own by :data:`OWN_SESSIONS`, so a tag written differently anywhere else would turn
connbench's own connections into the app's (or the app's into none).
"""

from __future__ import annotations

APP_NAME = "connbench-app"  # the built-in apps' sessions; on an external server, + run id
CONTROL_APP = "connbench-control"  # the runner's own connections (never counted as the app's)
SAMPLER_APP = "connbench-sampler"  # the pg_stat_activity sampler's
FAULT_APP = "connbench-fault"  # the fault injector's
# An own app or a target gets a database to itself (or is the one client of its database), so
# its sessions are every client session there but these: whatever library it uses, whatever
# application_name it sets or not.
OWN_SESSIONS = (CONTROL_APP, SAMPLER_APP, FAULT_APP)
# What connbench itself holds open while an app is measured (the fault injector's comes and
# goes): the connection budget counts these beside the app's own.
HELD_WHILE_MEASURING = (CONTROL_APP, SAMPLER_APP)
