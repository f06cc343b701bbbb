"""log-auditor: audits API access logs against PCI DSS v4.0.1, GDPR and OWASP API 2023."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
