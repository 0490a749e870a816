"""One run shared by several processes and hosts through the PostgreSQL journal.

The run's rows are loaded into the journal once (``loader``); its work is leased by lanes, one
user of the run on one site each (``runner.journal.pglanes``); a worker (``worker``) claims
lanes in fair order, renews their leases (``lease``), works each lane's rows in order with the
engine's row worker, every write guarded by the lane's owner and fence, and gives its lanes
back when it drains. ``forge-runner run`` on a PostgreSQL journal loads its run and works on it
as a worker (``runengine``); ``forge-runner worker`` joins every open run.
"""
