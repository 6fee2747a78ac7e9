"""The search wing: the loop, the trial logs (SQLite store, in-memory), objectives, executors.

Kept import-free on purpose: `edgenas.search.loop`, `.store`, `.objectives`, `.executors` and
`.ray_executor` are imported by what needs them, so that a strategy importing an objective does
not pull in Ray or the store.
"""
