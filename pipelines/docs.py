"""README tables generated from the declarations, so the README cannot drift from the code.

    python -m pipelines.docs           # rewrite the generated blocks of README.md
    python -m pipelines.docs --check   # exit 1 if README.md is not what the code generates

A block lies between `<!-- generated:NAME -->` and `<!-- end generated:NAME -->`; everything
else in README.md is left alone. Sources: op registrations and their parameter dataclasses
(gdl_data/ops/, gdl_data/params.py), SPEC_PARAMS (pipelines/spec.py), SCHEDULE_PARAMS
(pipelines/schedule.py), TRAIN_KEYS (pipelines/train_spec.py). tests/test_docs.py runs --check.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Callable

from gdl_data.params import REQUIRED, Param, declared, yaml_text

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _default(p: Param) -> str:
    if p.default is REQUIRED:
        return "required"
    if p.default is None:
        return "—"
    if any(type(c).__name__ == "Fixed" for c in p.constraints):
        return "(fixed)"
    return f"`{yaml_text(p.default)}`"


def _row(*cells: str) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def ops_table() -> str:
    from gdl_data.ops import list_ops
    lines = [_row("op", "version", "domains", "reads (depends on)", "adds"), _row(*["---"] * 5)]
    for name, op in sorted(list_ops(builtin=True).items()):
        domains = ", ".join(d for d in sorted(op.impls) if _accepts(op, d))
        lines.append(_row(f"`{name}`", op.version, domains, ", ".join(f"`{d}`" for d in op.depends_on) or "—",
                          ", ".join(f"`{o}`" for o in op.outputs)))
    return "\n".join(lines)


def _accepts(op, domain: str) -> bool:
    # frames has implementations for molecules and graphs only to refuse them with a message.
    from gdl_data.errors import SpecError
    try:
        op.parse_params({}, domain)
        return True
    except SpecError:
        return False


def op_params_table() -> str:
    from gdl_data.ops import list_ops
    lines = [_row("op", "parameter", "default", "allowed", "meaning"), _row(*["---"] * 5)]
    for name, op in sorted(list_ops(builtin=True).items()):
        for key, p in declared(op.params_type).items():
            lines.append(_row(f"`{name}`", f"`{key}`", _default(p), p.allowed(), p.doc))
    return "\n".join(lines)


def spec_keys_table() -> str:
    from pipelines.schedule import SCHEDULE_PARAMS
    from pipelines.spec import SPEC_PARAMS
    lines = [_row("key", "default", "allowed", "meaning"), _row(*["---"] * 4)]
    rows = [*SPEC_PARAMS.items(), *((f"schedule.{k}", p) for k, p in SCHEDULE_PARAMS.items())]
    for key, p in rows:
        lines.append(_row(f"`{key}`", _default(p), p.allowed(), p.doc))
    return "\n".join(lines)


def training_keys() -> str:
    from pipelines.train_spec import TRAIN_KEYS
    return ("Training (`pipelines/train_spec.py`, documented key by key there): "
            + ", ".join(f"`{k}`" for k in TRAIN_KEYS) + ".")


BLOCKS: dict[str, Callable[[], str]] = {"ops": ops_table, "op-parameters": op_params_table,
                                        "spec-keys": spec_keys_table, "training-keys": training_keys}


def render(text: str) -> str:
    """`text` with every generated block replaced by what the code generates now."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- end generated:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md has no block <!-- generated:{name} --> ... <!-- end generated:{name} -->")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    with open(README, encoding="utf-8") as fh:
        current = fh.read()
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print("README.md is out of date with the code; run: python -m pipelines.docs", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        with open(README, "w", encoding="utf-8") as fh:
            fh.write(wanted)
        print("README.md: generated tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
