"""Teachers: the frozen model a student distils from, its per-view soft-target cache, and the
`harness cache-teacher` build.

May import: `harness.config`, `harness.models`, `harness.data`, `harness.runtime`, `harness.store`,
`harness.metrics`, the strategy registry's types. Never the student loop (`harness.training`).
"""
