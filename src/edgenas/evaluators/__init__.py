"""Evaluators: what turns an architecture string into accuracy and latency.

`base` holds the contract (`TrialResult`, `Evaluator`); `nb201` looks results up in the
NAS-Bench-201 tables; `mnas` proxy-trains on images with latency from the latency subsystem;
`registry` maps `edgenas search --space NAME` to the kind that sets a search up. Import-free, so
that the contract can be imported without torch or the tables.
"""
