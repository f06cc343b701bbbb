"""Who reports: the product object both OCSF and ECS name."""

from __future__ import annotations

from typing import Any

import auditor

PRODUCT_NAME = "log-auditor"


def product() -> dict[str, Any]:
    return {"name": PRODUCT_NAME, "vendor_name": PRODUCT_NAME, "version": auditor.__version__}
