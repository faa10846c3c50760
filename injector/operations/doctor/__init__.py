"""`sakura-secrets-injector doctor`: check an installation end to end, one line per check.

A pure core and a thin shell: `gather` reads the cluster into `Facts` (plain JSON objects as
the API server answers them, the certificates the replicas present, their /readyz answers);
the checks (`install`, `tls`, `network`, `workload`) turn facts into `Result`s, PASS, WARN or
FAIL, each failure with the command that fixes it; `results` prints them. The checks are
tested with fixed facts, the shell on the local cluster (e2e/test_e2e_install.py).
"""
