"""`python -m injector ...`: the same command as `sakura-secrets-injector`."""

from injector.cli import main

raise SystemExit(main())
