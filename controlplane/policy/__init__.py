"""Policy: what users write, what it compiles to, and how a change is planned and stored. The pure part first.

- ``resources``: the documents (Tenant, ApiKey, Provider, Model, Route) as pydantic models.
- ``compile``: resources → one snapshot per region, a pure function (``build_snapshots`` checks references and
  compiles; ``compile_region`` for one region); residency is decided here.
- ``engine``: plans an apply, delete or rollback purely and returns problems as values.
- ``plan``: what a change would send to each region's data planes (``gatectl plan``), from the facts of the
  current and the proposed snapshots (``snapshot_facts``: residency, candidate order per tenant, limits, prices).
- ``repository``: the I/O shell: reads the policy and writes plans in guarded, all-or-nothing transactions.
- ``audit``: the history as a hash chain; ``compliance``: the compliance report from the compiled snapshots.
"""
