"""The `harness` command: one dispatch table in harness.cli.main; nothing else imports this package."""
