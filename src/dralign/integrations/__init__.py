"""Bridges from dralign's objectives to other training libraries.

Each bridge lives in its own module and imports its library only when the module is imported,
so `import dralign` never needs them:

- `dralign.integrations.trl`: any paired dralign objective inside TRL's `DPOTrainer`
  (install with `pip install 'dralign[trl]'`).
"""

__all__: list[str] = []
