"""The planner's passes, in the order `model.plan.build_plan` runs them, like a compiler's.

Each pass is a function that takes what it needs (the topology and earlier passes' results)
and returns a frozen result, plus the problems it found; `build_plan` stops at a gate after a
pass with problems, before a later pass needs its data:

1. `addresses.plan_subnets`          subnets, their bridges
   `addresses.kept_addresses`        the addresses a running lab's nodes keep (`Sticky`)
2. `addresses.plan_routers`          routers' interface addresses and static routes
3. `addresses.plan_node_addresses`   every node's IPv4/IPv6 address (fixed, kept or next free)
4. `allocation.plan_pools`           the IP pools with their effective block size and rule
   `allocation.plan_ipam`            blocks by affinity, tunnel and pod addresses (Calico IPAM)
5. `peering.plan_peering`            every node's BGP sessions, which of them can come up
6. `rib.plan_ribs`                   the expected RIB: BGP run over the sessions that come up
7. `fib.plan_fibs`                   the expected kernel FIB of every node
8. `notes.plan_notes`                what the plan warns about (sessions down, routes lost)

Passes decide; they do not touch the kernel, files or processes.
"""
