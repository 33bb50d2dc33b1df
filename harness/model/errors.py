"""The harness's exception tree. Every error the harness raises on purpose is one of these::

    HarnessError                    the harness could not do what it was asked (never a server's fault)
    ├── UsageError                  bad input from the user: the CLI prints str(exc) as one line, exit 2
    │   ├── ConfigError             a matrix file that cannot be read or names unknown fields
    │   └── UnknownServer           --server names no registered adapter and no `module:attr`

Errors from other harness modules keep their own classes (`pythons.InterpreterNotFound`,
`envs.EnvError`, `harness.adapters.Unsupported`): the runner turns those into `env-error` /
`unsupported` records, never into exceptions. `except Exception` appears only at process boundaries
(harness.run.runner.run_scenario, the CLI's main, the matrix's per-scenario subprocess), where it records.
"""


class HarnessError(Exception):
    """Base of every exception the harness raises on purpose; str(exc) is one line."""


class UsageError(HarnessError):
    """Bad input (flags, scenario fields). The CLI prints it as one line and exits 2."""


class ConfigError(UsageError):
    """A matrix file that cannot be parsed or that names unknown fields."""


class UnknownServer(UsageError):
    """--server names no registered adapter."""


__all__ = ["ConfigError", "HarnessError", "UnknownServer", "UsageError"]
