"""The tools the suite adds to the product, written as a tool file (``STEPFLOW_TOOL_FILES``), as a user would.

- ``chain-N``: a composite of N ``echo`` steps, each given the previous step's output;
- ``fan-N``: a composite of N independent ``echo`` steps, run at once;
- ``true``: a command tool running ``true`` in the sandbox.
"""

from __future__ import annotations

from pathlib import Path


def _composite(tool_id: str, sources: list[str]) -> str:
    """A composite of ``echo`` steps ``s0``, ``s1`` ... whose ``text`` is the reference ``sources[i]``."""
    head = (
        f'[[tool]]\nid = "{tool_id}"\nversion = "1.0.0"\nkind = "composite"\n[tool.parameters.text]\ntype = "string"\n'
    )
    steps = [
        f'[[tool.steps]]\nid = "s{i}"\ntool = "echo"\nparameters = {{ text = "{{{{ {source} }}}}" }}\n'
        for i, source in enumerate(sources)
    ]
    return "\n".join([head, *steps])


def chain(steps: int) -> str:
    return _composite(f"chain-{steps}", ["input.text"] + [f"steps.s{i}.output.text" for i in range(steps - 1)])


def fan(steps: int) -> str:
    return _composite(f"fan-{steps}", ["input.text"] * steps)


TRUE_TOOL = '[[tool]]\nid = "true"\nversion = "1.0.0"\nkind = "command"\nargv = ["true"]\nenv = ["PATH"]\n'


def write_tool_file(path: Path, *, chain_steps: int, fan_steps: int) -> Path:
    """Write the suite's tools to ``path``; return it."""
    path.write_text("\n".join((chain(chain_steps), fan(fan_steps), TRUE_TOOL)))
    return path
