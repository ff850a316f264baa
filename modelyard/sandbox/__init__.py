"""A local OpenRouter-compatible upstream on loopback: deterministic replies, real usage and cost
maths, and injected faults, so everything can be tried and tested offline without spending money.

```python
from modelyard.sandbox import Sandbox

async with Sandbox.running() as sb:          # port 0: a free port
    sb.base_url                               # "http://127.0.0.1:PORT/api/v1"; key "sk-or-v1-sandbox"
    sb.state.faults.add(model="openai/gpt-4o-mini", kind="rate_limit", count=2, retry_after=1)
    ...
    sb.state.billed_total()                   # Decimal
```

From a shell: `modelyard sandbox` or `python -m modelyard.sandbox --port 0` (prints
`SANDBOX_URL=...`). The control API is described in `modelyard.sandbox.control`, the faults in
`modelyard.sandbox.faults`, the token rule in `modelyard.sandbox.tokens` and the cost formula in
`modelyard.sandbox.pricing`.
"""

from modelyard.sandbox.app import Sandbox, serve
from modelyard.sandbox.catalog import Catalog, CatalogModel
from modelyard.sandbox.faults import FAULT_KINDS, Fault, FaultBook
from modelyard.sandbox.state import DEFAULT_API_KEY, LedgerEntry, SandboxConfig, SandboxState

__all__ = [
    "DEFAULT_API_KEY",
    "FAULT_KINDS",
    "Catalog",
    "CatalogModel",
    "Fault",
    "FaultBook",
    "LedgerEntry",
    "Sandbox",
    "SandboxConfig",
    "SandboxState",
    "serve",
]
