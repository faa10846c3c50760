"""The subcommands of `sakura-secrets-injector`, one module each: its flags and its run."""
