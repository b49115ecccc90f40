"""A lab's life: up, down, recover, repair, status, live changes; its processes; finding it.

The public names are re-exported here; the modules own one job each (`lifecycle`, `repair`,
`status`, `live`, `supervise`, `converge`, `preflight`, `running`). Persistence lives in
`meshemu.state`, observation in `meshemu.verify.observe`.
"""

from meshemu.lab.lifecycle import DownResult, UpResult, down, recover_state, up
from meshemu.lab.repair import RepairResult, repair
from meshemu.lab.running import netns_of, node_of, resolve_lab
from meshemu.lab.status import LabStatus, lab_status

__all__ = [
    "DownResult",
    "LabStatus",
    "RepairResult",
    "UpResult",
    "down",
    "lab_status",
    "netns_of",
    "node_of",
    "recover_state",
    "repair",
    "resolve_lab",
    "up",
]
