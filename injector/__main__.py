"""`python -m injector ...`: the same command as `sakura-secrets-injector`."""

from injector.operations.cli import main

raise SystemExit(main())
