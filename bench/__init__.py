"""meshemu's benchmark: how fast and how small a lab is, against BIRD and the dataplane floor.

`topologies` says what is measured, `measure` runs one lab and reads the figures, `report`
summarizes them and renders the table and the plot from the JSON; `__main__` is the command
(`scripts/bench.py`).
"""
