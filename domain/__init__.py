"""GridHub's domain (领域模型): grid codes, cells, components, taxonomy, cases, SLA calendar and KPIs.

Pure Python with no I/O: every other package builds on it, and it is the most tested code in the repo.
"""
