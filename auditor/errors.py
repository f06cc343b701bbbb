"""The error model of log-auditor.

::

    AuditorError                 every expected error; the CLI prints one line, no traceback
    ├── UsageError               bad command-line use (exit 2)
    ├── ConfigError              a bad config file: names the file and the key (exit 2)
    ├── RulesetError             a bad rule file: names the file, the rule and the key (exit 2)
    └── StoreError               the database cannot be opened or written (exit 1)

A bad *log line* is never an exception: parsers return ``None`` and the line is counted.
"""

from __future__ import annotations


class AuditorError(Exception):
    """Base of every expected error; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UsageError(AuditorError):
    exit_code = 2


class ConfigError(AuditorError):
    exit_code = 2


class RulesetError(AuditorError):
    exit_code = 2


class StoreError(AuditorError):
    exit_code = 1
