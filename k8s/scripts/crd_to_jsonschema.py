"""Convert CustomResourceDefinitions to the JSON schemas kubeconform reads (strict, as openapi2jsonschema).

    python k8s/scripts/crd_to_jsonschema.py OUT_DIR CRD.yaml...

Writes ``OUT_DIR/<group>/<kind>_<version>.json`` (kind in lower case) for every served version,
which is kubeconform's ``{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json``. Strict:
an object with ``properties`` and no ``additionalProperties`` rejects unknown fields (unless it has
``x-kubernetes-preserve-unknown-fields``), so a misspelt field fails validation the way the API
server's structural pruning would silently drop it. ``x-kubernetes-int-or-string`` becomes a
string-or-integer type. Descriptions are dropped (they are most of the bytes, and never validate).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items() if k != "description"}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def convert(crd_path: Path, out_dir: Path) -> list[Path]:
    written = []
    for doc in yaml.safe_load_all(crd_path.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = strict(version["schema"]["openAPIV3Schema"])
            # apiVersion/kind/metadata come from the object envelope; pin apiVersion and kind.
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
            props["kind"] = {"type": "string", "enum": [kind]}
            props.setdefault("metadata", {"type": "object"})
            schema.setdefault("required", [])
            for key in ("apiVersion", "kind", "metadata"):
                if key not in schema["required"]:
                    schema["required"].append(key)
            target = out_dir / group / f"{kind.lower()}_{version['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            written.append(target)
    return written


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write(str(__doc__))
        return 2
    out_dir = Path(argv[0])
    for crd in argv[1:]:
        for path in convert(Path(crd), out_dir):
            sys.stdout.write(f"  {crd} -> {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
