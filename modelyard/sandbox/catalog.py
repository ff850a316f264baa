"""The sandbox's model catalog: `/models` rows loaded from a JSON file, looked up and filtered.

The packaged `catalog.json` is a small hand-written catalog of well-known models with their real
prices (copied from OpenRouter's August 2026 `/models`). Any other file in the `/models` shape
(`{"data": [...]}` or a bare list of rows) can be loaded instead, e.g. the full 414-model snapshot.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Catalog", "CatalogModel", "provider_for"]

_VARIANTS = (":nitro", ":floor", ":online", ":exacto", ":extended", ":thinking", ":beta")
_PROVIDERS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google AI Studio",
    "meta-llama": "DeepInfra",
    "mistralai": "Mistral",
    "deepseek": "DeepSeek",
    "qwen": "Alibaba",
    "x-ai": "xAI",
    "perplexity": "Perplexity",
    "moonshotai": "Moonshot AI",
    "z-ai": "Z.AI",
}


def provider_for(author: str) -> str:
    """The provider name the sandbox reports for a model author (`openai` -> `OpenAI`)."""
    return _PROVIDERS.get(author, "Together")


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One catalog row, with typed accessors for what the sandbox needs."""

    row: Mapping[str, Any]
    params: frozenset[str] = field(default_factory=frozenset)
    text: str = "{}"
    """The row as compact JSON, serialised once."""
    served_by: str | None = None
    """The provider of the endpoint this view of the model is served from (`sandbox.endpoints`); None: the
    model's own (`provider_for`), at its listed prices."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CatalogModel:
        """Wrap a raw `/models` row."""
        text = json.dumps(row, separators=(",", ":"), ensure_ascii=False)
        return cls(row=row, params=frozenset(row.get("supported_parameters") or ()), text=text)

    @property
    def id(self) -> str:
        """The routable id, e.g. `openai/gpt-4o-mini`."""
        return str(self.row["id"])

    @property
    def slug(self) -> str:
        """The canonical slug chat responses report in `model` (the id when the row has none)."""
        return str(self.row.get("canonical_slug") or self.id)

    @property
    def name(self) -> str:
        """The display name."""
        return str(self.row.get("name") or self.id)

    @property
    def author(self) -> str:
        """The author part of the id (`openai`)."""
        return self.id.split("/", 1)[0].lstrip("~")

    @property
    def provider(self) -> str:
        """The provider name this model is served by in the sandbox."""
        return self.served_by or provider_for(self.author)

    @property
    def pricing(self) -> Mapping[str, Any]:
        """The raw pricing object (USD strings; missing keys mean 0)."""
        value = self.row.get("pricing")
        return value if isinstance(value, Mapping) else {}

    @property
    def is_router(self) -> bool:
        """True for routers such as `openrouter/auto` (prices `-1`)."""
        tokenizer = (self.row.get("architecture") or {}).get("tokenizer")
        return tokenizer == "Router" or Decimal(str(self.pricing.get("prompt", "0"))) < 0

    @property
    def is_free(self) -> bool:
        """True when prompt and completion are both free."""
        return all(Decimal(str(self.pricing.get(key, "0"))) == 0 for key in ("prompt", "completion"))

    @property
    def context_length(self) -> int | None:
        """The model's context window in tokens."""
        value = self.row.get("context_length") or (self.row.get("top_provider") or {}).get("context_length")
        return int(value) if value else None

    @property
    def max_completion_tokens(self) -> int | None:
        """The most completion tokens one request may ask for, if the catalog says."""
        value = (self.row.get("top_provider") or {}).get("max_completion_tokens")
        return int(value) if value else None

    @property
    def input_modalities(self) -> tuple[str, ...]:
        """Accepted input modalities (`text`, `image`, ...)."""
        return tuple((self.row.get("architecture") or {}).get("input_modalities") or ("text",))

    @property
    def output_modalities(self) -> tuple[str, ...]:
        """Produced output modalities."""
        return tuple((self.row.get("architecture") or {}).get("output_modalities") or ("text",))

    @property
    def reasoning_mandatory(self) -> bool:
        """True for models that always reason (e.g. DeepSeek R1)."""
        reasoning = self.row.get("reasoning")
        return bool(isinstance(reasoning, Mapping) and reasoning.get("mandatory"))

    def supports(self, *params: str) -> bool:
        """True when every named request parameter is in `supported_parameters`."""
        return all(param in self.params for param in params)

    def digest(self) -> int:
        """A stable number derived from the id, for deterministic per-model defaults."""
        return int.from_bytes(hashlib.sha256(self.id.encode()).digest()[:8], "big")


class Catalog:
    """The models the sandbox serves, in catalog order."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.models: tuple[CatalogModel, ...] = tuple(CatalogModel.from_row(row) for row in rows)
        self._by_id = {model.id: model for model in self.models}
        self._by_slug: dict[str, CatalogModel] = {}
        for model in self.models:
            self._by_slug.setdefault(model.slug, model)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalog:
        """Load a catalog file; None loads the packaged `catalog.json`."""
        if path is None:
            text = resources.files(__package__).joinpath("catalog.json").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        data = json.loads(text)
        rows = data.get("data", []) if isinstance(data, Mapping) else data
        return cls(row for row in rows if isinstance(row, Mapping) and "id" in row)

    def __len__(self) -> int:
        return len(self.models)

    def get(self, reference: str) -> CatalogModel | None:
        """Resolve an id, a canonical slug, or an id with a routing variant (`:nitro`, ...)."""
        found = self._by_id.get(reference) or self._by_slug.get(reference)
        if found is not None:
            return found
        for variant in _VARIANTS:
            if reference.endswith(variant):
                return self.get(reference[: -len(variant)])
        return None

    def select(
        self,
        *,
        supported_parameters: Sequence[str] = (),
        output_modalities: Sequence[str] = ("text",),
        input_modalities: Sequence[str] = (),
    ) -> list[CatalogModel]:
        """The models that support every parameter, produce any of the outputs, accept every input."""
        outputs = set(output_modalities)
        return [
            model
            for model in self.models
            if model.supports(*supported_parameters)
            and ("all" in outputs or outputs.intersection(model.output_modalities))
            and all(kind in model.input_modalities for kind in input_modalities)
        ]
