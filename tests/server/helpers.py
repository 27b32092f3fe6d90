"""Reading a live server's metrics."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def metrics(url: str) -> dict[str, float]:
    """Every sample of ``/metrics`` by name (labels beyond the fixed ones joined in)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            extra = {k: v for k, v in sample.labels.items() if k not in ("EndpointName", "VariantName", "Instance")}
            key = sample.name + "".join(
                f"[{v}]" for v in extra.values() if sample.name.endswith(("_total", "")) and "le" not in extra
            )
            if "le" in extra:
                key = f"{sample.name}[le={extra['le']}]"
            samples[key] = sample.value
    return samples
