"""Fleet records in the database, used by the CLI and the service: every name of the modules of
service/fleet, split by what they are about (common: kinds and FleetError; lockers: registration, the
change log, the sync planner's input, flapping connections; codes; deliveries, returns and
notifications; staff and their PINs; requests).

Issuing or revoking a code appends one change to the locker's log and raises its host revision H in
the same transaction; the service notices the commit and syncs the locker.
"""

from lockertools.service.fleet.codes import *  # noqa: F403
from lockertools.service.fleet.common import *  # noqa: F403
from lockertools.service.fleet.deliveries import *  # noqa: F403
from lockertools.service.fleet.lockers import *  # noqa: F403
from lockertools.service.fleet.reports import *  # noqa: F403
from lockertools.service.fleet.requests import *  # noqa: F403
from lockertools.service.fleet.staff import *  # noqa: F403
