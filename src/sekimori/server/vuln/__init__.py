"""Vulnerability posture (issue 8): feed parsers (OSV, CISA KEV, NVD), version
ordering per ecosystem, the importer, the matcher and the background job that keeps
findings current. The console reads the results through
``sekimori.server.store.vulns``. See docs/vulnerabilities.md.
"""
