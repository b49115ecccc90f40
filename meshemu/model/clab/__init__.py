"""containerlab topologies in and out of meshemu's model (pure: no file is read or written here).

`export.export_clab` turns a lab's plan and topology into a containerlab topology and the files
beside it; `imports.import_clab` turns a containerlab topology back into a native topology.
`labels` names the container labels both sides agree on.
"""
